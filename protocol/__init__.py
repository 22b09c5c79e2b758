"""RDP wire protocol: TPKT, X.224 connection request/confirm, negotiation, probe, .rdp files."""
