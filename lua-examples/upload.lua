-- Echoes the request body as the handler sees it (after hooks/body_upper.lua's input filter).
function handle(r)
    r.content_type = "text/plain"
    local body = r:requestbody()
    r:puts(body or "(no body)", "\n")
end
