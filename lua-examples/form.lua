-- A form echo: GET shows a form and the query parameters; POST echoes the submitted fields.
-- r:parseargs() and r:parsebody() return two tables: the last value of each field (as
-- mod_lua's do), and every value of each field in the order sent.
local util = require "util"

local function echo(r, title, simple, multi)
    r:puts("<h2>", util.html(title), "</h2>\n<ul>\n")
    for _, name in ipairs(util.sorted_keys(simple)) do
        local values = {}
        for i, v in ipairs(multi[name]) do values[i] = util.html(v) end
        r:puts("<li><b>", util.html(name), "</b> = ", table.concat(values, ", "), "</li>\n")
    end
    r:puts("</ul>\n")
end

function handle(r)
    r.content_type = "text/html; charset=utf-8"
    r:puts([[<!DOCTYPE html>
<html><head><title>Form echo</title></head><body>
<form method="post" action="form.lua">
  <input name="name" placeholder="name"> <input name="color" placeholder="color">
  <button>Send</button>
</form>
]])
    echo(r, "Query parameters", r:parseargs())
    if r.method == "POST" then
        local simple, multi, err = r:parsebody()
        if err then
            r:puts("<p>Could not read the form: ", util.html(err), "</p>")
        else
            echo(r, "Posted fields", simple, multi)
        end
    end
    r:puts("</body></html>\n")
end
