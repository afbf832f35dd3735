//! RESP2/RESP3 frames (being written).
