"""The database: tables, sessions, the group-commit writer, every query, migrations."""
