"""ZeroMQ bridge between robots or simulators and a policy server; the client side needs only numpy, pyzmq and msgpack."""
