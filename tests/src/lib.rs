//! End-to-end tests of Vitals live in `tests/tests/`: they start the whole cluster (the
//! all-in-one, or the four services on their own ports) on port 0 and talk real gRPC.
