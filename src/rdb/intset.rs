use super::EncodingError;
pub fn header(_b: &[u8]) -> Result<(u32, u32), EncodingError> {
    todo!()
}
pub fn get(_b: &[u8], _e: u32, _i: u32) -> Result<i64, EncodingError> {
    todo!()
}
