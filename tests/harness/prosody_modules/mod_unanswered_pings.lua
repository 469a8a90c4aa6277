-- Test-only: the host named by `unanswered_pings_host` never answers XEP-0199 pings from
-- other domains, as a remote server that is slow or unreachable looks to a client: no reply
-- within its wait. Its own users' pings are answered (the test harness uses them).
if module.host ~= module:get_option_string("unanswered_pings_host") then return end
local jid_host = require "util.jid".host;

module:hook("iq-get/host/urn:xmpp:ping:ping", function(event)
	if jid_host(event.stanza.attr.from) ~= module.host then
		return true;
	end
end, 1000);
