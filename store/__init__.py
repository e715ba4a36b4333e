"""The store: every SQL statement of the service, and the one way they run.

- ``models.py``: the schema (SQLAlchemy 2 typed models), which the Alembic migrations in
  ``migrations/`` (run by ``migrate.py``) are checked against.
- ``db.py``: ``Database``, SQLite (the embedded default) or PostgreSQL; ``read()`` and
  ``write()`` hand out a ``Tx``. ``sqlite.py`` and ``postgres.py`` hold each driver's side
  (SQLite's group commit, PostgreSQL's pool); ``errors.py`` the two failures.
- ``tx.py``: ``Tx`` and how statements are compiled, cached and run (its docstring describes
  the design).
- One module per subject, each statement written once, every function taking a ``Tx``:
  ``users.py``, ``forum.py`` (enrollments, chats, participants), ``messages.py``,
  ``events.py`` (the event log), ``outbox.py``, ``webhook_keys.py``, ``pachca_links.py``.
"""
