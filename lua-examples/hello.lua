-- The smallest handler: httpd calls handle(r) for every request to this file.
function handle(r)
    r.content_type = "text/plain"
    r:puts("Hello Lua World!\n")
    return apache2.OK
end
