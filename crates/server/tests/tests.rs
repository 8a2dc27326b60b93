//! Integration tests: the real server on loopback sockets, driven over HTTP by the client
//! SDK, by hand-made requests for the attacks, and by an independent RFC 9421 implementation.

mod it;
