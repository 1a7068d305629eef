-- Migration notes.0003_note_archive: archived notes move to their own table.
CREATE TABLE notes_archive (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, body TEXT NOT NULL, archived_at DATETIME NOT NULL);
INSERT INTO notes_archive (title, body, archived_at) SELECT title, body, '2026-03-01' FROM notes_note WHERE archived;
DELETE FROM notes_note WHERE archived;
INSERT INTO django_migrations (app, name, applied) VALUES ('notes', '0003_note_archive', '2026-03-01');
-- What the app wrote since: one more archived note, one new note.
INSERT INTO notes_archive (title, body, archived_at) VALUES ('late', 'archived after the migration', '2026-03-02');
INSERT INTO notes_note (title, body) VALUES ('new', 'written after the migration');
