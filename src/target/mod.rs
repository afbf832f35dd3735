//! The target side: a pipelined writer per target connection.
