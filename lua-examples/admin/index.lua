-- Protected by hooks/access.lua (IP or X-Api-Token).
function handle(r)
    r.content_type = "text/plain"
    r:puts("admin area\n")
end
