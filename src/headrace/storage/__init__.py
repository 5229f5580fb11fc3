"""What several layers keep on disk and share: SQLite databases in the data directory."""
