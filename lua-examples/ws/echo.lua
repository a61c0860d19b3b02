-- A WebSocket echo endpoint: connect to ws://host/ws/echo.lua and every message comes back.
-- Send "quit" and the server closes the connection.
function handle(r)
    if not r:wsupgrade() then              -- not a valid WebSocket handshake
        r.content_type = "text/plain"
        r:puts("connect with a WebSocket client\n")
        return 400
    end
    r:wswrite("welcome: every message you send comes back")
    while true do
        local message, fin, opcode = r:wsread()   -- nil when the client closes
        if not message then break end
        if message == "quit" then
            r:wsclose()
            break
        end
        r:wswrite(message)
    end
    return apache2.DONE
end
