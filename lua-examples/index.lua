-- The examples' index page.
local pages = {
    { "hello.lua", "Hello world" },
    { "form.lua?name=Ada&color=green", "Form echo (GET and POST)" },
    { "guestbook.lua", "A guestbook in SQLite (r:dbacquire, prepared statements)" },
    { "api/items", "JSON API: list items (LuaMapHandler)" },
    { "api/items/2", "JSON API: one item" },
    { "api/health", "JSON API: health" },
    { "request.lua?a=1&a=2&b=x", "What r tells a script about a request" },
    { "blog/hello-world", "URL rewriting in a translate_name hook" },
    { "admin/", "Access checker: loopback or X-Api-Token" },
    { "private/", "Basic authentication by a Lua check_user_id hook (alice / wonderland)" },
    { "filtered/page.html", "An output filter rewriting HTML, chained with DEFLATE" },
    { "ws/echo.lua", "WebSocket echo (connect with a WebSocket client: ws://host/ws/echo.lua)" },
}

function handle(r)
    r.content_type = "text/html; charset=utf-8"
    r:puts("<!DOCTYPE html><html><head><title>mod_lua examples</title></head><body>\n")
    r:puts("<h1>mod_lua examples</h1>\n<p>", apache2.version, "</p>\n<ul>\n")
    for _, p in ipairs(pages) do
        r:puts('<li><a href="', p[1], '">', p[2], "</a></li>\n")
    end
    r:puts("</ul></body></html>\n")
end
