-- Test-only: a server that refuses one message body for good. A message from a client
-- whose body contains the marker closes the sender's stream with policy-violation, the way
-- Prosody answers a stanza over c2s_stanza_size_limit: the message's fault, every time.
local marker = module:get_option_string("refuse_marker", "CVSMSG-REFUSE-ME");

local function check(event)
	local body = event.stanza:get_child_text("body");
	if body and body:find(marker, 1, true) then
		event.origin:close({ condition = "policy-violation", text = "refused by test module" });
		return true;
	end
end

module:hook("pre-message/bare", check, 1000);
module:hook("pre-message/full", check, 1000);
