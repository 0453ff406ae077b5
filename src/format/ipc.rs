//! Arrow IPC file encoding and zero-copy decoding of the single record batch an index holds.
//!
//! See formats/SPEC.md, "Index blocks".

use crate::error::{Error, Result};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::reader::{read_footer_length, FileDecoder};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Schema};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Encodes one record batch as an Arrow IPC file with the given schema metadata.
pub fn encode(batch: &RecordBatch, metadata: HashMap<String, String>) -> Result<Vec<u8>> {
    let schema = batch.schema().as_ref().clone().with_metadata(metadata);
    let batch = batch
        .clone()
        .with_schema(Arc::new(schema.clone()))
        .expect("same fields");
    let mut writer = FileWriter::try_new(Vec::new(), &schema).map_err(arrow_bug)?;
    writer.write(&batch).map_err(arrow_bug)?;
    writer.finish().map_err(arrow_bug)?;
    writer.into_inner().map_err(arrow_bug)
}

fn arrow_bug(e: arrow_schema::ArrowError) -> Error {
    Error::io("encode index", "<memory>", std::io::Error::other(e))
}

/// Decodes the single record batch of an Arrow IPC file held in `buf`, without copying
/// aligned buffers, and returns it with the schema metadata.
///
/// Every offset taken from the file is checked before it is used; the Arrow decoder validates
/// the arrays themselves. Any panic inside the decoder on hostile input becomes an error.
pub fn decode(buf: &Buffer, file: &Path) -> Result<(RecordBatch, HashMap<String, String>)> {
    let corrupt = |reason: String| Error::corrupt(file, format!("index block: {reason}"));
    let result = std::panic::catch_unwind(|| decode_unguarded(buf));
    match result {
        Ok(inner) => inner.map_err(corrupt),
        Err(_) => Err(corrupt("the Arrow decoder rejected the index".into())),
    }
}

fn decode_unguarded(
    buf: &Buffer,
) -> std::result::Result<(RecordBatch, HashMap<String, String>), String> {
    let len = buf.len();
    if len < 10 {
        return Err(format!("{len} bytes is too short for an Arrow IPC file"));
    }
    let trailer: [u8; 10] = buf[len - 10..].try_into().expect("10 bytes");
    let footer_len = read_footer_length(trailer).map_err(|e| e.to_string())?;
    let footer_start = (len - 10)
        .checked_sub(footer_len)
        .ok_or_else(|| format!("Arrow footer length {footer_len} exceeds the block"))?;
    let footer = arrow_ipc::root_as_footer(&buf[footer_start..len - 10])
        .map_err(|e| format!("Arrow footer: {e}"))?;
    let fb_schema = footer.schema().ok_or("Arrow footer has no schema")?;
    let schema = arrow_ipc::convert::try_fb_to_schema(fb_schema).map_err(|e| e.to_string())?;
    let metadata = schema
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err("unexpected dictionary batches".into());
    }
    let blocks = footer
        .recordBatches()
        .ok_or("Arrow footer lists no record batches")?;
    if blocks.len() != 1 {
        return Err(format!("expected one record batch, found {}", blocks.len()));
    }
    let block = blocks.get(0);
    let start = usize::try_from(block.offset()).map_err(|_| "negative batch offset")?;
    let meta_len =
        usize::try_from(block.metaDataLength()).map_err(|_| "negative metadata length")?;
    let body_len = usize::try_from(block.bodyLength()).map_err(|_| "negative body length")?;
    let block_len = meta_len
        .checked_add(body_len)
        .ok_or("batch length overflows")?;
    match start.checked_add(block_len) {
        Some(end) if end <= footer_start => {}
        _ => return Err("record batch lies outside the index block".into()),
    }
    check_field_types(&schema)?;
    let data = buf.slice_with_length(start, block_len);
    check_buffer_bounds(&data[..meta_len], body_len, &schema)?;
    let decoder = FileDecoder::new(Arc::new(schema), footer.version());
    let batch = decoder
        .read_record_batch(block, &data)
        .map_err(|e| e.to_string())?
        .ok_or("empty record batch message")?;
    Ok((batch, metadata))
}

/// Checks that every buffer the record batch message names lies inside the batch body and is
/// 8-byte aligned, as the Arrow format requires, and that buffers of fixed-width values hold a
/// whole number of values, before the decoder slices anything (it asserts rather than fails).
fn check_buffer_bounds(
    meta: &[u8],
    body_len: usize,
    schema: &Schema,
) -> std::result::Result<(), String> {
    const CONTINUATION: [u8; 4] = [0xff; 4];
    let prefix = if meta.starts_with(&CONTINUATION) {
        8
    } else {
        4
    };
    let flatbuffer = meta
        .get(prefix..)
        .ok_or("record batch metadata is truncated")?;
    let message = arrow_ipc::root_as_message(flatbuffer)
        .map_err(|e| format!("record batch metadata: {e}"))?;
    let batch = message
        .header_as_record_batch()
        .ok_or("the block is not a record batch")?;
    let buffers: Vec<_> = batch.buffers().into_iter().flatten().collect();
    check_value_widths(&buffers, schema)?;
    for buffer in buffers {
        let (offset, len) = (buffer.offset(), buffer.length());
        let inside = offset >= 0
            && len >= 0
            && offset
                .checked_add(len)
                .is_some_and(|end| end as u64 <= body_len as u64);
        if !inside || offset % 8 != 0 {
            return Err(format!(
                "a column buffer [{offset}, +{len}) lies outside the {body_len}-byte batch body"
            ));
        }
    }
    Ok(())
}

/// Refuses a schema with a column of a type no sheaf index uses (any version), before the
/// decoder sees it: the decoder asserts on some types' parameters instead of failing (a
/// negative `FixedSizeBinary` width, found by fuzzing), and what sheaf never wrote it need not
/// decode.
fn check_field_types(schema: &Schema) -> std::result::Result<(), String> {
    for field in schema.fields() {
        let known = match field.data_type() {
            DataType::Binary
            | DataType::Utf8
            | DataType::UInt8
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Int64 => true,
            DataType::FixedSizeBinary(width) => *width > 0,
            _ => false,
        };
        if !known {
            return Err(format!(
                "column `{}` has type {}, which no sheaf index uses",
                field.name(),
                field.data_type()
            ));
        }
    }
    Ok(())
}

/// For flat schemas (all an index uses), buffer `2i` is field `i`'s validity bitmap and buffer
/// `2i + 1` its values or offsets; their lengths must be multiples of the value width.
fn check_value_widths(
    buffers: &[&arrow_ipc::Buffer],
    schema: &Schema,
) -> std::result::Result<(), String> {
    let mut next = 0;
    for field in schema.fields() {
        let width = match field.data_type() {
            DataType::Binary | DataType::Utf8 => 4,
            DataType::FixedSizeBinary(_) => 1,
            other => match other.primitive_width() {
                Some(width) => width,
                // Nested or unexpected types: the decoder validates them itself.
                None => return Ok(()),
            },
        };
        let values = buffers
            .get(next + 1)
            .ok_or("fewer column buffers than fields")?;
        if values.length() % width as i64 != 0 {
            return Err(format!(
                "column `{}` has a {}-byte buffer, not a whole number of {width}-byte values",
                field.name(),
                values.length()
            ));
        }
        next += if matches!(field.data_type(), DataType::Binary | DataType::Utf8) {
            3
        } else {
            2
        };
    }
    Ok(())
}

/// Returns the named column, checking its type and that it holds no nulls.
pub fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
    data_type: &DataType,
    file: &Path,
) -> Result<&'a T> {
    let corrupt = |reason: String| Error::corrupt(file, format!("index column `{name}`: {reason}"));
    let array: &ArrayRef = batch
        .column_by_name(name)
        .ok_or_else(|| corrupt("missing".into()))?;
    if array.data_type() != data_type {
        return Err(corrupt(format!(
            "type {} where {data_type} was expected",
            array.data_type()
        )));
    }
    if array.null_count() != 0 {
        return Err(corrupt("holds nulls".into()));
    }
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| corrupt("unexpected array layout".into()))
}

/// Builds a schema of non-nullable fields.
pub fn schema(fields: &[(&str, DataType)]) -> Arc<Schema> {
    let fields: Vec<_> = fields
        .iter()
        .map(|(name, ty)| arrow_schema::Field::new(*name, ty.clone(), false))
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BinaryArray, UInt64Array};
    use arrow_ipc::writer::IpcWriteOptions;
    use arrow_ipc::MetadataVersion;

    /// Blocks another Arrow writer made with the IPC format's minimum 8-byte alignment read
    /// as well as this writer's 64-byte aligned ones (formats/SPEC.md, "Containers").
    #[test]
    fn a_block_with_8_byte_alignment_from_another_writer_decodes() {
        let schema = schema(&[("path", DataType::Binary), ("len", DataType::UInt64)]);
        let paths: Vec<&[u8]> = vec![b"a", b"bb", b"ccc"];
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(BinaryArray::from(paths)),
                Arc::new(UInt64Array::from(vec![1u64, 22, 333])),
            ],
        )
        .unwrap();
        let options = IpcWriteOptions::try_new(8, false, MetadataVersion::V5).unwrap();
        let mut writer = FileWriter::try_new_with_options(Vec::new(), &schema, options).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let bytes = writer.into_inner().unwrap();
        let (decoded, _) = decode(&Buffer::from_vec(bytes), Path::new("other-writer")).unwrap();
        assert_eq!(decoded, batch);
        // And this writer's own block, for comparison.
        let ours = encode(&batch, HashMap::new()).unwrap();
        let (decoded, _) = decode(&Buffer::from_vec(ours), Path::new("ours")).unwrap();
        assert_eq!(decoded.columns(), batch.columns());
    }

    /// Found by fuzzing: a schema giving a `FixedSizeBinary` column a negative width made the
    /// Arrow decoder panic (caught, but a panic all the same); it is refused before decoding.
    #[test]
    fn a_column_of_a_type_no_index_uses_is_refused_before_decoding() {
        let found = include_bytes!("../../fuzz/regressions/parse_index-negative-fixed-width.bin");
        let e = decode_unguarded(&Buffer::from(found.to_vec())).unwrap_err();
        assert!(e.contains("which no sheaf index uses"), "{e}");
        let schema = schema(&[("path", DataType::Binary), ("when", DataType::Float64)]);
        let batch = RecordBatch::new_empty(schema);
        let bytes = encode(&batch, HashMap::new()).unwrap();
        let e = decode_unguarded(&Buffer::from_vec(bytes)).unwrap_err();
        assert_eq!(
            e,
            "column `when` has type Float64, which no sheaf index uses"
        );
    }
}
