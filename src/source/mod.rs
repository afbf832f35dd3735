//! Sources of data: the replica link to a live server (`replica`), with its disk spool.
