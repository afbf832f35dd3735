//! Turning decoded data into commands for the target.
