-- Test-only: behave like ejabberd, which answers a presence probe only for a contact with
-- available resources and says nothing about one without (RFC 6121 §4.3.2 allows both).
-- Prosody answers the latter with an `unavailable` from the contact's bare JID, posted by
-- the host itself (origin.type "local"); a contact going offline sends theirs from a
-- session, with a resource, and still gets through.
local jid_resource = require "util.jid".resource;

module:hook("presence/full", function(event)
	local stanza = event.stanza;
	if stanza.attr.type == "unavailable" and event.origin.type == "local"
		and not jid_resource(stanza.attr.from) then
		return true;
	end
end, 1000);
