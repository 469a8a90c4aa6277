-- Test-only: answer a client's </stream:stream> only after `close_linger` seconds, as
-- ejabberd does (~0.1 s), and log who ended the connection first.
local delay = module:get_option_number("close_linger", 1);

module:hook("pre-session-close", function(event)
	local session = event.session;
	if event.reason ~= false or not session.conn then return end -- client-initiated only
	local conn, jid = session.conn, session.full_jid;
	local held = {};
	session.send = function(data) held[#held + 1] = tostring(data); return true; end
	-- mod_c2s closes the connection right after this event: make that a no-op for now
	session.conn = setmetatable({ close = function() end }, { __index = conn });
	module:add_timer(delay, function()
		if not conn.conn then
			module:log("info", "close_linger: %s ended the connection first", jid);
			return;
		end
		module:log("info", "close_linger: our closing tag to %s goes out now", jid);
		for _, data in ipairs(held) do conn:write(data); end
		conn:close();
	end);
end, 1000);
