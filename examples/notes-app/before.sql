-- The notes app before migration notes.0003_note_archive: 20 notes, 5 archived.
CREATE TABLE django_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, app VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL, applied DATETIME NOT NULL);
INSERT INTO django_migrations (app, name, applied) VALUES ('notes', '0001_initial', '2026-01-01'), ('notes', '0002_note_archived', '2026-02-01');
CREATE TABLE notes_note (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, body TEXT NOT NULL, archived BOOL NOT NULL DEFAULT 0);
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19)
INSERT INTO notes_note (title, body, archived) SELECT 'note ' || i, 'body', i % 4 = 0 FROM n;
