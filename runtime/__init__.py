"""The real-time side of vlart: stage timing, control loop, command line."""
