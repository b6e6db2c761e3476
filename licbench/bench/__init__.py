"""The benchmark pipeline: RD rows, tables, leaderboard, report, crops, complexity."""
