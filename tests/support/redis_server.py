"""A real Redis for the tests, started on a free loopback port with a temporary config.

Tests that need it use :func:`run_redis` (or the session-wide ``redis_server``
fixture of ``tests/conftest.py``), which calls :func:`require_redis`: skip when ``redis-server``
is missing, fail under ``CI=true`` (``.ci/test`` installs it there)::

    with run_redis() as redis:
        backend = RedisBackend(redis.url)
        redis.restart()                  # an empty Redis again, same port
        redis.kill_pubsub()              # CLIENT KILL TYPE pubsub

Two topologies are built from the same servers (fixtures ``redis_sentinel`` and
``redis_cluster`` in ``tests/backends/conftest.py``)::

    with run_sentinel() as setup:        # a master, a replica, 3 sentinels
        Sentinel(setup.sentinel_addresses).master_for(setup.master_name)
        setup.failover()                 # SENTINEL FAILOVER, until the new master serves

    with run_cluster() as cluster:       # 3 masters, one replica each
        RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster.startup_nodes])
        cluster.failover(cluster.master_for_key("k"))   # CLUSTER FAILOVER on its replica
        cluster.kill_master(cluster.master_for_key("k"))  # SIGKILL, until a replica took over

The servers keep nothing on disk (``save ""``, no AOF), listen only on 127.0.0.1,
run in the foreground as children of the test, and never touch a Redis the machine
may run (they never use port 6379 unless the OS hands that out as free). Every wait is
bounded (scaled by :func:`tests.support.seconds`) and fails with an AssertionError that
says what was still missing.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from tests.support import find_binary, free_port, missing_component, seconds

MISSING = "redis-server (Debian package redis-server) is not installed"


REDIS_SERVER = find_binary("redis-server")

#: Cluster slots (CLUSTER KEYSLOT is 0..16383).
SLOTS = 16384


def require_redis() -> str:
    """The redis-server binary; skip the test when missing (fail under ``CI=true``)."""
    if REDIS_SERVER is None:
        missing_component(MISSING)
    return REDIS_SERVER


class ReplyError(Exception):
    """An error reply (``-ERR ...``, ``-NOGOODSLAVE ...``) to :meth:`RedisServer.call`."""


class PortInUse(AssertionError):
    """A server could not listen: another process took its port meanwhile."""


def _read_reply(stream: BinaryIO) -> Any:
    """One RESP2 reply: str for simple and bulk strings, int, list, None; raises
    :class:`ReplyError` for an error reply."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"connection closed in a reply: {line!r}")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ReplyError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise ConnectionError(f"not a RESP2 reply: {line!r}")


def _encode(args: Sequence[str | int]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _pairs(flat: list[Any]) -> dict[str, Any]:
    """``[k1, v1, k2, v2...]`` (a SENTINEL MASTER entry) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports of 127.0.0.1 (held together while chosen, so a
    topology's servers do not draw the same one)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def wait_until(check: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll ``check`` until it returns None (done); it returns what is still missing.

    A connection or reply error counts as "not yet" (a server may be restarting).
    After ``timeout`` seconds (scaled) raise an AssertionError naming ``what`` and
    the last thing missing.
    """
    deadline = time.monotonic() + seconds(timeout)
    while True:
        try:
            missing = check()
        except (OSError, ReplyError) as error:
            missing = f"{type(error).__name__}: {error}"
        if missing is None:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {seconds(timeout):.1f} s waiting for {what}: {missing}"
            )
        time.sleep(0.01)


class RedisServer:
    """A running redis-server: ``url``, ``port``, and fault injection.

    Its methods are synchronous (a start takes a few milliseconds), so one server can
    serve a whole session from a plain fixture and async tests alike.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        #: Extra redis.conf lines (``"appendonly yes"``), written at every start.
        self.options: list[str] = []

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        """``("127.0.0.1", port)``."""
        return ("127.0.0.1", self.port)

    @property
    def running(self) -> bool:
        """Whether the process is alive (paused included)."""
        return self.process is not None and self.process.poll() is None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 127.0.0.1:{self.port}>"

    def command(self, *args: str) -> bytes:
        """Run one command on a fresh connection and return the first line of the reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=seconds(5)) as sock:
            sock.sendall(_encode(args))
            with sock.makefile("rb") as reply:
                return reply.readline()

    def call(self, *args: str | int) -> Any:
        """Run one command on a fresh connection and return the whole reply, parsed
        (str, int, list, None); an error reply raises :class:`ReplyError`."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=seconds(5)) as sock:
            sock.sendall(_encode(args))
            with sock.makefile("rb") as reply:
                return _read_reply(reply)

    def info(self, section: str = "") -> dict[str, str]:
        """``INFO [section]`` as a dict of its ``key:value`` lines."""
        text = self.call("INFO", section) if section else self.call("INFO")
        return dict(
            line.split(":", 1) for line in text.splitlines() if line and not line.startswith("#")
        )

    def role(self) -> str:
        """The first element of ``ROLE``: ``master``, ``slave`` or ``sentinel``."""
        return str(self.call("ROLE")[0])

    def kill_pubsub(self) -> int:
        """``CLIENT KILL TYPE pubsub``: drop every pub/sub connection; return how many."""
        reply = self.command("CLIENT", "KILL", "TYPE", "pubsub")
        assert reply.startswith(b":"), reply
        return int(reply[1:])

    def _config(self, port: int) -> str:
        """The redis.conf for a start on ``port``."""
        return (
            f"port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
            f'save ""\nappendonly no\ndir {self.directory}\n'
            f"logfile {self.directory}/redis.log\n" + "".join(f"{o}\n" for o in self.options)
        )

    def _write_config(self, port: int) -> Path:
        """Write the config for a start on ``port``; return its path."""
        conf = self.directory / "redis.conf"
        conf.write_text(self._config(port))
        return conf

    def _spawn(self, port: int) -> None:
        """Start the process on ``port`` (without waiting for it)."""
        conf = self._write_config(port)
        (self.directory / "redis.log").write_bytes(b"")
        self.process = subprocess.Popen(
            [self.binary, str(conf), *self._arguments()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.port = port

    def _arguments(self) -> list[str]:
        return []

    def _await_ready(self, deadline: float) -> bool:
        """Wait for PONG: True once it answers, False if its port was taken (it is
        stopped then); AssertionError with the log for any other failure."""
        assert self.process is not None
        while self.process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if self.command("PING") == b"+PONG\r\n":
                    return True
            time.sleep(0.005)
        self.stop()
        log = (self.directory / "redis.log").read_text(errors="replace")
        if "Address already in use" not in log:
            raise AssertionError(f"redis-server did not start:\n{log}")
        return False

    def _port_taken(self, fixed: bool) -> None:
        """Forget the ports to draw again after ``Address already in use``."""
        if not fixed:
            self.port = 0  # another process took the port: pick another

    def start(self) -> None:
        """Start on ``port`` (a free one the first time; the same one on a restart)."""
        start_servers([self])

    def stop(self) -> None:
        """Kill the server (SIGKILL: nothing is saved, as in a crash)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash: the same as :meth:`stop`; :meth:`start` brings it back
        on the same port."""
        self.stop()

    def pause(self) -> None:
        """SIGSTOP: the server holds its connections but answers nothing (a hung
        host); :meth:`resume` continues it, :meth:`stop` still kills it."""
        assert self.process is not None, "not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.process is not None, "not running"
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.stop()
        self.start()


def start_servers(servers: Sequence[RedisServer], attempts: int = 20) -> None:
    """Start several servers at once: spawn them all, then wait for each (most of a
    start is waiting for the process, so N servers take about the time of one).

    A server without a port draws a free one, and another after ``Address already in
    use``; one with a port (a restart) tries that port again. Raises :class:`PortInUse`
    when ``attempts`` are used up.
    """
    fixed = {id(server): bool(server.port) for server in servers}
    pending = list(servers)
    for attempt in range(attempts):
        drawn = iter(free_ports(sum(not fixed[id(server)] for server in pending)))
        try:
            for server in pending:
                server._spawn(server.port if fixed[id(server)] else next(drawn))
            deadline = time.monotonic() + seconds(10)
            pending = [server for server in pending if not server._await_ready(deadline)]
        except BaseException:
            for server in pending:
                server.stop()
            raise
        if not pending:
            return
        for server in pending:
            server._port_taken(fixed[id(server)])
        if attempt + 1 < attempts:
            time.sleep(0.1)
    raise PortInUse(f"redis-server could not listen on port(s) {[s.port for s in pending]}")


@contextlib.contextmanager
def run_redis() -> Iterator[RedisServer]:
    """Run a throw-away redis-server on a free loopback port (see the module doc)."""
    binary = require_redis()
    directory = Path(tempfile.mkdtemp(prefix="rtlink-redis-"))
    server = RedisServer(binary, directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _option_lines(options: Mapping[str, object]) -> list[str]:
    """``appendonly="yes"`` as ``appendonly yes`` (underscores become dashes)."""
    return [f"{name.replace('_', '-')} {value}" for name, value in options.items()]


#: Replication through a file on disk (in the server's temp dir, deleted once sent):
#: Redis 7's default, diskless, waits 5 s for other replicas to join a transfer, and
#: even without that delay starts streaming writes only on the replica's first ACK,
#: up to a second after the sync, while the link already says "up" (a failover then
#: loses every write of that second). From disk, writes flow as soon as the link is up.
_FAST_REPLICATION = ["repl-diskless-sync no", "rdb-del-sync-files yes"]


# --- Sentinel ---------------------------------------------------------------------------------


class DataServer(RedisServer):
    """A master or replica of a Sentinel setup: a restart comes back as a replica of
    the master the setup knows last (``replicaof``), or as a master when None (an
    empty one: nothing is saved, so a restarted master starts empty, as after a crash
    without persistence, and Sentinel turns it into a replica of the new master)."""

    def __init__(self, binary: str, directory: Path) -> None:
        super().__init__(binary, directory)
        self.replicaof: int | None = None

    def _config(self, port: int) -> str:
        replica = f"replicaof 127.0.0.1 {self.replicaof}\n" if self.replicaof else ""
        return super()._config(port) + replica


class SentinelServer(RedisServer):
    """A redis-server in sentinel mode. Sentinel rewrites its config file with what
    it learns (its id, epochs, the others): the file stays in a writable temp dir and
    a restart on the same port keeps it, so the sentinel comes back as itself."""

    def __init__(self, binary: str, directory: Path) -> None:
        super().__init__(binary, directory)
        #: 40 hex digits; fixed so that the others can be told about it in advance.
        self.myid = secrets.token_hex(20)
        #: The ``sentinel ...`` lines (monitor, known replicas and sentinels).
        self.sentinel_lines: list[str] = []
        self._written_for = 0

    def _config(self, port: int) -> str:
        return (
            f"port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
            f"dir {self.directory}\nlogfile {self.directory}/redis.log\n"
            f"sentinel myid {self.myid}\n" + "".join(f"{o}\n" for o in self.sentinel_lines)
        )

    def _write_config(self, port: int) -> Path:
        conf = self.directory / "redis.conf"
        if self._written_for != port or not conf.exists():
            super()._write_config(port)
            self._written_for = port
        # else a restart: keep what sentinel wrote (current master, epochs, the others).
        return conf

    def _arguments(self) -> list[str]:
        return ["--sentinel"]

    def _await_ready(self, deadline: float) -> bool:
        if not super()._await_ready(deadline):
            return False
        # INFO every 250 ms rather than 10 s (SENTINEL DEBUG: a runtime setting, not
        # kept in the config file; replicas of a master that is down or failing over
        # get one every second whatever it says): a sentinel that asked a server its
        # role just before the harness demoted it would take 10 s to see a replica.
        self.call("SENTINEL", "DEBUG", "info-period", 250)
        return True


def _flags(entry: Mapping[str, Any]) -> set[str]:
    """The flags of a SENTINEL MASTER/REPLICAS/SENTINELS entry that matter: its kind
    and whether it is down, unreachable or failing over. Not ``master_down``: it
    lingers a few seconds after a failover and only says what the others reported."""
    return set(entry["flags"].split(",")) - {"master_down"}


class SentinelSetup:
    """A master, its replicas and the sentinels that watch them (see
    :func:`run_sentinel`).

    ``master`` and ``replicas`` are the roles as the harness last saw them: the
    initial ones, then those after :meth:`failover` or :meth:`wait_master_changed`.
    """

    def __init__(self, master_name: str, servers: list[DataServer],
                 sentinels: list[SentinelServer]) -> None:
        self.master_name = master_name
        #: Every data server, master first at the start.
        self.servers = servers
        self.master = servers[0]
        self.replicas = servers[1:]
        self.sentinels = sentinels

    @property
    def sentinel_ports(self) -> list[int]:
        """The sentinels' ports."""
        return [sentinel.port for sentinel in self.sentinels]

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``[("127.0.0.1", port), ...]``, as redis-py's ``Sentinel`` takes them."""
        return [sentinel.address for sentinel in self.sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/<master_name>/0``."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.master_name}/0"

    def server_on(self, port: int) -> DataServer:
        """The data server listening on ``port``."""
        for server in self.servers:
            if server.port == port:
                return server
        raise AssertionError(f"no server of this setup on port {port}")

    def _ask(self, sentinel: SentinelServer) -> int:
        reply = sentinel.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        if reply is None:
            raise ReplyError(f"{sentinel} does not know {self.master_name!r}")
        return int(reply[1])

    def current_master_port(self) -> int:
        """The master's port, as the first sentinel that answers names it."""
        errors = []
        for sentinel in self.sentinels:
            if sentinel.running:
                try:
                    return self._ask(sentinel)
                except (OSError, ReplyError) as error:
                    errors.append(f"{sentinel}: {error}")
        raise AssertionError(f"no sentinel named the master: {errors or 'none running'}")

    def _adopt(self, master_port: int) -> None:
        """Record the roles: restarts come back as replicas of the new master."""
        self.master = self.server_on(master_port)
        self.replicas = [server for server in self.servers if server is not self.master]
        self.master.replicaof = None
        for replica in self.replicas:
            replica.replicaof = master_port

    def wait_master_changed(self, old_port: int, timeout: float = 30) -> DataServer:
        """Wait until every running sentinel names a master other than ``old_port``
        (the same one) and that server answers ``ROLE`` master; return it."""

        def changed() -> str | None:
            named = {s.port: self._ask(s) for s in self.sentinels if s.running}
            if not named:
                return "no sentinel is running"
            if set(named.values()) == {old_port} or len(set(named.values())) != 1:
                return f"the sentinels name (sentinel port: master port) {named}"
            role = self.server_on(next(iter(named.values()))).role()
            return None if role == "master" else f"the new master answers ROLE {role}"

        wait_until(changed, timeout, f"a master other than port {old_port}")
        port = self.current_master_port()
        self._adopt(port)
        return self.master

    def failover(self, timeout: float = 30, demote: bool = True) -> DataServer:
        """``SENTINEL FAILOVER``, then wait for the new master (see
        :meth:`wait_master_changed`).

        Sentinel itself turns the old master into a replica only 8-10 s later (it
        waits 4 hello periods, 8 s, then for its next INFO to that server: every
        10 s by default, every 250 ms here); until then the old master still takes
        writes from the connections made to it before.

        Args:
            timeout: Seconds (scaled) for each wait.
            demote: Send the old master ``REPLICAOF <new master>`` at once, as
                Sentinel eventually would, then wait until every replica is in sync
                and the sentinels are ready again (another failover can follow).
                Without, return as soon as the sentinels name the new master: the
                old one is still a master, other replicas may still be switching.

        Returns:
            The new master (also ``self.master`` now).
        """
        old_port = self.current_master_port()

        def started() -> str | None:
            sentinel = next(s for s in self.sentinels if s.running)
            # NOGOODSLAVE (no replica it heard from lately) and INPROG (the last
            # failover is still reconfiguring replicas) raise ReplyError: try again.
            sentinel.call("SENTINEL", "FAILOVER", self.master_name)
            return None

        wait_until(started, timeout, f"SENTINEL FAILOVER {self.master_name} to start")
        old = self.server_on(old_port)
        master = self.wait_master_changed(old_port, timeout)
        if not demote:
            return master
        if old.running:
            old.call("REPLICAOF", "127.0.0.1", master.port)
        self.wait_replicas_linked(timeout)
        self.wait_sentinels_ready(timeout)
        return master

    def wait_replicas_linked(self, timeout: float = 30) -> None:
        """Wait until every running replica replicates the master with its link up
        and has received every write the master had taken when the wait began."""
        offset = int(self.master.info("replication")["master_repl_offset"])

        def linked() -> str | None:
            for replica in self.replicas:
                if replica.running:
                    info = replica.info("replication")
                    if (info.get("role"), info.get("master_port"),
                            info.get("master_link_status")) != ("slave", str(self.master.port),
                                                                "up"):
                        return f"{replica}: {info.get('role')} of {info.get('master_port')}, " \
                               f"link {info.get('master_link_status')}"
                    if int(info["slave_repl_offset"]) < offset:
                        return f"{replica}: at offset {info['slave_repl_offset']} of {offset}"
            return None

        wait_until(linked, timeout, f"the replicas of {self.master} to be in sync")

    def wait_sentinels_ready(self, timeout: float = 30) -> None:
        """Wait until every running sentinel sees the master up, each running
        replica answering INFO as its replica, and every other sentinel connected:
        what SENTINEL FAILOVER and an automatic failover (quorum) need."""
        running = [s for s in self.sentinels if s.running]
        replica_ports = {r.port for r in self.replicas if r.running}

        def ready() -> str | None:
            for sentinel in running:
                master = _pairs(sentinel.call("SENTINEL", "MASTER", self.master_name))
                if int(master["port"]) != self.master.port or _flags(master) != {"master"}:
                    return f"{sentinel}: master {master['port']} flags {master['flags']}"
                replicas = [_pairs(r) for r in
                            sentinel.call("SENTINEL", "REPLICAS", self.master_name)]
                seen = {int(r["port"]) for r in replicas
                        if _flags(r) == {"slave"} and r.get("role-reported") == "slave"
                        and r.get("master-link-status") == "ok"
                        and int(r.get("master-port", 0)) == self.master.port}
                if not replica_ports <= seen:
                    return f"{sentinel}: replicas in sync {sorted(seen)}, " \
                           f"want {sorted(replica_ports)}"
                others = [_pairs(s) for s in
                          sentinel.call("SENTINEL", "SENTINELS", self.master_name)]
                connected = {int(s["port"]) for s in others if _flags(s) == {"sentinel"}}
                want = {s.port for s in running if s is not sentinel}
                if not want <= connected:
                    return f"{sentinel}: other sentinels {sorted(connected)}, want {sorted(want)}"
            return None

        wait_until(ready, timeout, f"the sentinels to know {self.master_name!r}")

    def kill_master(self, timeout: float = 30) -> DataServer:
        """SIGKILL the master and wait for Sentinel's automatic failover (see
        :meth:`wait_master_changed`): 2-3 s with ``down_after_ms=1000``. Return the
        new master; ``start()`` on the old one brings it back as its replica."""
        old = self.master
        old.kill()
        return self.wait_master_changed(old.port, timeout)


@contextlib.contextmanager
def run_sentinel(replicas: int = 1, sentinels: int = 3, master_name: str = "rtlink", *,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 5000,
                 **options: object) -> Iterator[SentinelSetup]:
    """Run a master, its replicas and the sentinels watching them, on loopback.

    The sentinels monitor the master with a quorum of a majority (2 of 3). They are
    told of the replicas and of each other in their config (``known-replica``,
    ``known-sentinel``), so they need not wait for Sentinel's 2 s hello messages to
    find each other. The context is entered once the replicas are in sync and every
    sentinel knows everyone (:meth:`SentinelSetup.wait_sentinels_ready`), about
    0.3 s after the call; everything is killed and the temp dirs removed on exit.

    Args:
        replicas: How many replicas the master has.
        sentinels: How many sentinels watch it.
        master_name: The name the sentinels know it by.
        down_after_ms: ``down-after-milliseconds``: a dead master is seen down
            1-2 s after it died (the sentinels PING once a second).
        failover_timeout_ms: ``failover-timeout`` (also: no new automatic failover
            of the same master by a sentinel within twice that).
        **options: Extra redis.conf directives for the master and replicas
            (``appendonly="yes"``; underscores become dashes).

    Yields:
        The running :class:`SentinelSetup`.
    """
    binary = require_redis()
    root = Path(tempfile.mkdtemp(prefix="rtlink-sentinel-"))
    data: list[DataServer] = []
    watchers: list[SentinelServer] = []
    try:
        for index in range(1 + replicas):
            (root / f"redis-{index}").mkdir()
            server = DataServer(binary, root / f"redis-{index}")
            server.options = [*_FAST_REPLICATION, *_option_lines(options)]
            data.append(server)
        start_servers(data)
        master = data[0]
        for replica in data[1:]:
            replica.replicaof = master.port  # for restarts
            # At run time rather than in the config: a replica configured so at
            # start connects at its next cron tick (up to 1 s), REPLICAOF at once.
            replica.call("REPLICAOF", "127.0.0.1", master.port)
        for index in range(sentinels):
            (root / f"sentinel-{index}").mkdir()
            watchers.append(SentinelServer(binary, root / f"sentinel-{index}"))
        setup = SentinelSetup(master_name, data, watchers)
        setup.wait_replicas_linked()
        _start_sentinels(setup, down_after_ms, failover_timeout_ms)
        # A sentinel retries a failed link once per ping period (1 s), and those
        # started first try the others before these listen: retry every 100 ms while
        # they connect. Then back to 1 s, since Sentinel also takes 5 ping periods as
        # how fresh a replica's INFO must be to promote it when the master is down,
        # and replicas get one INFO a second then: at 100 ms, no replica would do.
        for sentinel in watchers:
            sentinel.call("SENTINEL", "DEBUG", "ping-period", 100)
        setup.wait_sentinels_ready()
        for sentinel in watchers:
            sentinel.call("SENTINEL", "DEBUG", "ping-period", 1000)
        yield setup
    finally:
        for process in [*watchers, *data]:
            process.stop()
        shutil.rmtree(root, ignore_errors=True)


def _start_sentinels(setup: SentinelSetup, down_after_ms: int, failover_timeout_ms: int) -> None:
    """Start the sentinels on ports drawn together (each one's config names the
    others); if one was taken meanwhile, draw them all again."""
    name = setup.master_name
    quorum = len(setup.sentinels) // 2 + 1
    for _attempt in range(5):
        ports = free_ports(len(setup.sentinels))
        for sentinel, port in zip(setup.sentinels, ports, strict=True):
            sentinel.port = port
        for sentinel in setup.sentinels:
            sentinel.sentinel_lines = [
                "sentinel resolve-hostnames no",
                "sentinel announce-ip 127.0.0.1",
                f"sentinel monitor {name} 127.0.0.1 {setup.master.port} {quorum}",
                f"sentinel down-after-milliseconds {name} {down_after_ms}",
                f"sentinel failover-timeout {name} {failover_timeout_ms}",
                f"sentinel parallel-syncs {name} 1",
                *(f"sentinel known-replica {name} 127.0.0.1 {r.port}" for r in setup.replicas),
                *(f"sentinel known-sentinel {name} 127.0.0.1 {other.port} {other.myid}"
                  for other in setup.sentinels if other is not sentinel),
            ]
        try:
            start_servers(setup.sentinels, attempts=1)
            return
        except PortInUse:
            for sentinel in setup.sentinels:
                sentinel.stop()
                sentinel._written_for = 0
    raise AssertionError("the sentinels found no free ports in 5 attempts")


# --- Cluster ----------------------------------------------------------------------------------


class ClusterNodeServer(RedisServer):
    """A redis-server with ``cluster-enabled yes``. Its ``nodes.conf`` stays in its
    directory, so a restart rejoins the cluster as the same node (with the same id,
    and as a replica when its slots went to another node meanwhile)."""

    def __init__(self, binary: str, directory: Path, node_timeout_ms: int) -> None:
        super().__init__(binary, directory)
        self.node_timeout_ms = node_timeout_ms
        #: The cluster bus port, drawn apart: the default (port + 10000) may be taken,
        #: or above 65535 for the high ports the OS hands out.
        self.bus_port = 0
        self.node_id = ""

    def _config(self, port: int) -> str:
        if not self.bus_port:
            self.bus_port = free_port()
        return super()._config(port) + (
            f"cluster-enabled yes\ncluster-config-file nodes.conf\n"
            f"cluster-node-timeout {self.node_timeout_ms}\ncluster-port {self.bus_port}\n"
            # Announce the address the clients use (loopback) in MOVED and CLUSTER SLOTS.
            "cluster-announce-ip 127.0.0.1\n"
            # Let a replica take over however long it was cut off (tests kill masters
            # at any moment; a real cluster would rather stay down than lose data).
            "cluster-replica-validity-factor 0\n"
        )

    def _port_taken(self, fixed: bool) -> None:
        super()._port_taken(fixed)
        if not fixed:
            self.bus_port = 0


class ClusterSetup:
    """A running cluster (see :func:`run_cluster`): ``nodes``, the roles they have
    now (asked of the cluster, not remembered) and failovers."""

    def __init__(self, nodes: list[ClusterNodeServer], masters: int) -> None:
        self.nodes = nodes
        self._initial_masters = masters

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``[("127.0.0.1", port), ...]`` of the initial masters."""
        return [node.address for node in self.nodes[: self._initial_masters]]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`` (the initial
        masters)."""
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.startup_nodes)

    def node_on(self, port: int) -> ClusterNodeServer:
        """The node listening on ``port``."""
        for node in self.nodes:
            if node.port == port:
                return node
        raise AssertionError(f"no node of this cluster on port {port}")

    def _is_running(self, port: int) -> bool:
        """Whether a node of this cluster runs on ``port`` (0 for a node still in
        handshake)."""
        return any(node.port == port and node.running for node in self.nodes)

    def _node_by_id(self, node_id: str) -> ClusterNodeServer:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise AssertionError(f"no node of this cluster has id {node_id}")

    def _view(self, node: ClusterNodeServer) -> list[dict[str, Any]]:
        """``CLUSTER NODES`` as ``node``'s view: one dict per node (id, port, flags,
        master id, slot ranges)."""
        view = []
        for line in node.call("CLUSTER", "NODES").splitlines():
            fields = line.split()
            ranges = []
            for item in fields[8:]:
                if not item.startswith("["):  # [slot->-id]: a slot in migration
                    first, _, last = item.partition("-")
                    ranges.append((int(first), int(last or first)))
            view.append({
                "id": fields[0], "port": int(fields[1].split("@")[0].rsplit(":", 1)[1]),
                "flags": set(fields[2].split(",")), "master": fields[3], "slots": ranges,
            })
        return view

    def _any_view(self) -> list[dict[str, Any]]:
        errors = []
        for node in self.nodes:
            if node.running:
                try:
                    return self._view(node)
                except (OSError, ReplyError) as error:
                    errors.append(f"{node}: {error}")
        raise AssertionError(f"no node answered CLUSTER NODES: {errors or 'none running'}")

    def masters(self) -> list[ClusterNodeServer]:
        """The masters that serve slots, as a running node sees it."""
        return [self._node_by_id(entry["id"]) for entry in self._any_view()
                if "master" in entry["flags"] and "fail" not in entry["flags"]
                and entry["slots"]]

    def replicas(self) -> list[ClusterNodeServer]:
        """The replicas, as a running node sees it (a failed one included)."""
        return [self._node_by_id(entry["id"]) for entry in self._any_view()
                if "slave" in entry["flags"]]

    def keyslot(self, key: str) -> int:
        """``CLUSTER KEYSLOT key`` (a ``{tag}`` picks the slot by the tag alone)."""
        node = next(node for node in self.nodes if node.running)
        return int(node.call("CLUSTER", "KEYSLOT", key))

    def master_of_slot(self, slot: int) -> ClusterNodeServer:
        """The master serving ``slot`` now."""
        for entry in self._any_view():
            if "master" in entry["flags"] and "fail" not in entry["flags"] and any(
                    first <= slot <= last for first, last in entry["slots"]):
                return self._node_by_id(entry["id"])
        raise AssertionError(f"no master serves slot {slot}")

    def master_for_key(self, key: str) -> ClusterNodeServer:
        """The master serving ``key``'s slot now."""
        return self.master_of_slot(self.keyslot(key))

    def replica_of(self, master: ClusterNodeServer) -> ClusterNodeServer:
        """A running replica of ``master``."""
        for entry in self._any_view():
            if entry["master"] == master.node_id and "fail" not in entry["flags"]:
                node = self._node_by_id(entry["id"])
                if node.running:
                    return node
        raise AssertionError(f"{master} has no running replica")

    def wait_ok(self, timeout: float = 30) -> None:
        """Wait until every running node says ``cluster_state:ok`` with all slots
        ok, they agree on the running nodes' roles (which master serves which slots,
        which replica follows which master), none flags a running node as failing,
        and every running replica's link to its master is up: a client gets the same
        answer wherever it asks, and a failover can start."""
        running = [node for node in self.nodes if node.running]

        def settled() -> str | None:
            layouts = set()
            for node in running:
                info = dict(line.split(":", 1)
                            for line in node.call("CLUSTER", "INFO").splitlines() if ":" in line)
                if (info["cluster_state"], info["cluster_slots_ok"]) != ("ok", str(SLOTS)):
                    return f"{node}: cluster_state {info['cluster_state']}, " \
                           f"slots ok {info['cluster_slots_ok']}"
                view = self._view(node)
                flagged = [e["port"] for e in view if e["flags"] & {"fail", "fail?"}
                           and self._is_running(e["port"])]
                if flagged:
                    return f"{node} flags running nodes as failing: {flagged}"
                ports = {e["id"]: e["port"] for e in view}
                layouts.add(frozenset(
                    (e["port"], "master" if "master" in e["flags"] else "replica",
                     ports.get(e["master"]), tuple(sorted(e["slots"])))
                    for e in view if self._is_running(e["port"])
                ))
            if len(layouts) > 1:
                return f"the nodes disagree on the roles and slots: {layouts}"
            for node in running:
                info = node.info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return f"{node}: link to its master {info.get('master_link_status')}"
            return None

        wait_until(settled, timeout, "the cluster to be ok on every running node")

    def failover(self, master: ClusterNodeServer, timeout: float = 30) -> ClusterNodeServer:
        """``CLUSTER FAILOVER`` on a replica of ``master`` (a coordinated switch:
        the master pauses its clients until the replica caught up); return the
        replica once it is master of those slots everywhere and the old master
        replicates it."""
        replica = self.replica_of(master)
        replica.call("CLUSTER", "FAILOVER")
        self._wait_promoted(master, replica, timeout)
        return replica

    def migrate_slot(self, slot: int, target: ClusterNodeServer, timeout: float = 30) -> None:
        """Move ``slot`` and its keys to master ``target`` as ``redis-cli --cluster
        reshard`` does (IMPORTING, MIGRATING, MIGRATE in batches, then SETSLOT NODE on
        the two nodes and every other master), and wait until every node agrees."""
        source = self.master_of_slot(slot)
        assert source is not target, f"{target} serves slot {slot} already"
        target.call("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.call("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        while keys := source.call("CLUSTER", "GETKEYSINSLOT", slot, 100):
            source.call("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in [target, source, *(m for m in self.masters() if m not in (source, target))]:
            node.call("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)

        def moved() -> str | None:
            for node in self.nodes:
                if node.running and self.master_of_slot_seen_by(node, slot) != target.node_id:
                    return f"{node} does not see {target} serving slot {slot} yet"
            return None

        wait_until(moved, timeout, f"every node to see slot {slot} on {target}")

    def master_of_slot_seen_by(self, node: ClusterNodeServer, slot: int) -> str | None:
        """The id of the master serving ``slot`` in ``node``'s view."""
        for entry in self._view(node):
            if "master" in entry["flags"] and any(
                    first <= slot <= last for first, last in entry["slots"]):
                return str(entry["id"])
        return None

    def kill_master(self, master: ClusterNodeServer, timeout: float = 30) -> ClusterNodeServer:
        """SIGKILL ``master`` and wait for the automatic failover: its replica is
        promoted once the others flag the master as failed (after
        ``cluster-node-timeout``) and won the election; return the new master.
        ``master.start()`` later brings it back as a replica of it."""
        replicas = {self._node_by_id(e["id"]) for e in self._any_view()
                    if e["master"] == master.node_id}
        assert replicas, f"{master} has no replica to take over"
        master.kill()

        def promoted() -> str | None:
            for replica in replicas:
                if replica.running and replica.role() == "master":
                    return None
            return "no replica answers ROLE master yet"

        wait_until(promoted, timeout, f"a replica of {master} to take over")
        new = next(r for r in replicas if r.running and r.role() == "master")
        self.wait_ok(timeout)
        return new

    def _wait_promoted(self, old: ClusterNodeServer, new: ClusterNodeServer,
                       timeout: float) -> None:
        def switched() -> str | None:
            role = new.role()
            if role != "master":
                return f"{new} answers ROLE {role}"
            if old.running and old.info("replication").get("master_port") != str(new.port):
                return f"{old} does not replicate {new} yet"
            return None

        wait_until(switched, timeout, f"{new} to take over from {old}")
        self.wait_ok(timeout)


@contextlib.contextmanager
def run_cluster(masters: int = 3, replicas_per_master: int = 1, *,
                node_timeout_ms: int = 1000) -> Iterator[ClusterSetup]:
    """Run a Redis Cluster, every node on loopback with its own temp dir.

    The cluster is made as ``redis-cli --cluster create`` makes it (distinct config
    epochs, slots split evenly, CLUSTER MEET, CLUSTER REPLICATE) but without its
    one-second polls, nor redis-cli. The context is entered once the cluster is ok
    everywhere (:meth:`ClusterSetup.wait_ok`), about 2 s after the call: Redis keeps
    a master that just started from saying ``cluster_state:ok`` for 2 s. Everything
    is killed and removed on exit.

    Args:
        masters: How many masters share the 16384 slots (evenly).
        replicas_per_master: How many replicas each master has.
        node_timeout_ms: ``cluster-node-timeout``: a dead master is replaced 2-3 s
            after it died.

    Yields:
        The running :class:`ClusterSetup`.
    """
    binary = require_redis()
    root = Path(tempfile.mkdtemp(prefix="rtlink-cluster-"))
    nodes: list[ClusterNodeServer] = []
    try:
        for index in range(masters * (1 + replicas_per_master)):
            (root / f"node-{index}").mkdir()
            node = ClusterNodeServer(binary, root / f"node-{index}", node_timeout_ms)
            node.options = list(_FAST_REPLICATION)
            nodes.append(node)
        start_servers(nodes)
        _create_cluster(nodes, masters, replicas_per_master)
        setup = ClusterSetup(nodes, masters)
        setup.wait_ok()
        yield setup
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


def _create_cluster(nodes: list[ClusterNodeServer], masters: int, replicas: int) -> None:
    """Join ``nodes`` into a cluster: the first ``masters`` take the slots, the rest
    replicate them in turn."""
    for epoch, node in enumerate(nodes, start=1):
        node.node_id = node.call("CLUSTER", "MYID")
        # Distinct epochs up front, as redis-cli sets them: otherwise the nodes
        # first resolve their equal epochs among themselves.
        node.call("CLUSTER", "SET-CONFIG-EPOCH", epoch)
    bounds = [SLOTS * index // masters for index in range(masters + 1)]
    for index, node in enumerate(nodes[:masters]):
        node.call("CLUSTER", "ADDSLOTSRANGE", bounds[index], bounds[index + 1] - 1)
    for node in nodes[1:]:
        nodes[0].call("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)

    def joined(node: ClusterNodeServer) -> Callable[[], str | None]:
        def check() -> str | None:
            lines = node.call("CLUSTER", "NODES").splitlines()
            known = [line for line in lines if not {"handshake", "noaddr"}
                     & set(line.split()[2].split(","))]
            return None if len(known) == len(nodes) else f"{node} knows {len(known)} nodes"
        return check

    for node in nodes:
        wait_until(joined(node), 30, "every node to know every other")
    for index, node in enumerate(nodes[masters:]):
        node.call("CLUSTER", "REPLICATE", nodes[index % masters].node_id)
    assert len(nodes) == masters * (1 + replicas)
