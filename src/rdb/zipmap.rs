use super::EncodingError;
pub fn header(_b: &[u8]) -> Result<usize, EncodingError> {
    todo!()
}
pub fn next<'a>(
    _b: &'a [u8],
    _p: &mut usize,
) -> Result<Option<(&'a [u8], &'a [u8])>, EncodingError> {
    todo!()
}
