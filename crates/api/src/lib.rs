//! berth-api (being written)
