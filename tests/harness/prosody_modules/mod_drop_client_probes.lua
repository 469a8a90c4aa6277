-- Test-only: behave like a server that ignores presence probes sent by clients
-- (RFC 6121 §4.3 only says a server SHOULD process them). Prosody's own probes (sent on a
-- client's initial presence, through the same hook) carry no id; slixmpp's always do.
module:hook("pre-presence/bare", function(event)
	local stanza = event.stanza;
	if stanza.attr.type == "probe" and stanza.attr.id then
		return true;
	end
end, 1000);
