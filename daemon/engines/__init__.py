"""Engines that execute runs. The local engine is `executor.Executor` (one process, SQLite or
PostgreSQL); `temporal.TemporalEngine` executes the same runs as Temporal workflows shared by
several replicas. Nothing is imported here: the workflow module is loaded by Temporal's
sandbox, and the Temporal client only where the config names that engine."""
