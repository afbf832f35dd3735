//! Writes a generated RDB of many small strings to the path given: `gen_rdb PATH N [VALUE_LEN]`.
//! Used by `scripts/bench-rdb.sh` to compare decoders on identical input.
use ferry::rdb::writer::RdbWriter;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: gen_rdb PATH N [VALUE_LEN]");
    let n: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let vlen: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let mut w = RdbWriter::new(11);
    w.select_db(0);
    let value = vec![b'v'; vlen];
    for i in 0..n {
        w.string(format!("key:{i:012}").as_bytes(), &value, None);
    }
    std::fs::write(path, w.finish()).expect("write");
}
