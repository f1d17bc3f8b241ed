//! berth-network (being written)
