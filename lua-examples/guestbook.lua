-- A guestbook kept in SQLite through r:dbacquire: GET lists the entries, POST adds one.
--
-- The database file is named by `SetEnv LUA_GUESTBOOK_DB /path/guestbook.db` (the directory
-- must be writable by the server's user). With mod_dbd instead, configure
--     DBDriver sqlite3
--     DBDParams /path/guestbook.db
-- and call r:dbacquire() without arguments: connections then come from mod_dbd's pool.

local SCHEMA = [[CREATE TABLE IF NOT EXISTS entries (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, message TEXT NOT NULL)]]

local function open(r)
  local path = r.subprocess_env["LUA_GUESTBOOK_DB"]
  if not path then return nil, "LUA_GUESTBOOK_DB is not set" end
  local db, err = r:dbacquire("sqlite3", path)
  if not db then return nil, err end
  local ok, schema_err = db:query(r, SCHEMA)
  if not ok then
    db:close()
    return nil, schema_err
  end
  return db
end

local function add(r, db)
  local form = r:parsebody()
  local name, message = form.name, form.message
  if not name or name == "" or not message or message == "" then
    r.status = 400
    r.content_type = "text/plain"
    r:puts("name and message are required\n")
    return apache2.OK
  end
  -- Values go through a prepared statement, never into the SQL text.
  local insert = db:prepare(r, "INSERT INTO entries (name, message) VALUES (%s, %s)")
  local added, err = insert:query(name, message)
  if not added then
    r:err("guestbook: " .. tostring(err))
    return 500
  end
  -- Post/redirect/get: reloading the page does not post again.
  r.headers_out["Location"] = r.uri
  return 303
end

local function list(r, db)
  r.content_type = "text/html; charset=utf-8"
  r:puts("<!doctype html>\n<title>Guestbook</title>\n<h1>Guestbook</h1>\n<ul>\n")
  local rows = db:select(r, "SELECT name, message FROM entries ORDER BY id DESC LIMIT 50")
  for _, row in ipairs(rows and rows(0, true) or {}) do
    r:puts("<li><b>", r:escape_html(row.name), "</b>: ", r:escape_html(row.message), "</li>\n")
  end
  r:puts("</ul>\n<form method=\"post\"><input name=\"name\" placeholder=\"name\"> ",
    "<input name=\"message\" placeholder=\"message\"> <button>Sign</button></form>\n")
  return apache2.OK
end

function handle(r)
  local db, err = open(r)
  if not db then
    r:err("guestbook: " .. tostring(err))
    return 503
  end
  -- The connection is returned when the request ends in any case; closing it as soon as we
  -- are done keeps it free for others.
  local status = (r.method == "POST" and add or list)(r, db)
  db:close()
  return status
end
