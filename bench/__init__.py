"""rtlink's benchmarks against its peers: ``bash bench/run.sh`` (see bench/README.md)."""

__all__: list[str] = []
