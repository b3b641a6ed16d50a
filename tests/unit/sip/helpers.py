"""Messages shared by the sip unit tests."""

from __future__ import annotations

SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP6 2001:db8::10\r\ns=-\r\n"
    b"c=IN IP6 2001:db8::10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n"
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"v: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bK4b43c2ff8.1 ,\r\n"
    b" SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK2\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Contact: <sip:alice@[2001:db8::10]:5060;transport=udp>\r\n"
    b"X-Unknown:  odd   value ;; ,,\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: %d\r\n\r\n" % len(SDP)
) + SDP

RESPONSE = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP [2001:db8::10]"
    b";branch=z9hG4bK776asdhds;rport=5060;received=2001:db8::99\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)
