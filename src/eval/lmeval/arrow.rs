//! Columnar documents, as `datasets` hands them to a task: Parquet files
//! (`dataset_path: parquet`) and the Arrow IPC streams of the Hugging Face
//! datasets cache, both decoded by the Apache Arrow readers into record
//! batches, each row then a JSON object with the Python value `datasets`
//! gives: integers, floats, strings, booleans, None, lists and dicts.
//! A column of a type with no JSON counterpart (binary, dates, decimals...)
//! is refused, naming it, rather than guessed at.

/// A document: one row as a JSON object (`docs::Doc`, spelled here so the
/// readers need nothing above them).
type Doc = Map<String, Value>;
use crate::error::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::{Map, Value};
use std::path::Path;

/// The rows of a Parquet file.
pub fn read_parquet(path: &Path, bytes: &[u8]) -> Result<Vec<Doc>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    // ParquetError's text starts "Parquet error: ".
    let bad = |e: parquet::errors::ParquetError| Error::bad_file(path, e.to_string());
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
        .map_err(bad)?
        .build()
        .map_err(bad)?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::bad_file(path, format!("Parquet error: {e}")))?;
        rows(path, &batch, &mut out)?;
    }
    Ok(out)
}

/// The rows of an Arrow IPC stream (the `.arrow` files `datasets` writes).
pub fn read_ipc_stream(path: &Path, bytes: &[u8]) -> Result<Vec<Doc>> {
    let bad = |e: arrow_schema::ArrowError| Error::bad_file(path, format!("Arrow IPC stream: {e}"));
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(bad)?;
    let mut out = Vec::new();
    for batch in reader {
        rows(path, &batch.map_err(bad)?, &mut out)?;
    }
    Ok(out)
}

fn rows(path: &Path, batch: &RecordBatch, out: &mut Vec<Doc>) -> Result<()> {
    let schema = batch.schema();
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        let vals = values(c.as_ref())
            .map_err(|m| Error::bad_file(path, format!("column '{}': {m}", f.name())))?;
        cols.push((f.name().clone(), vals));
    }
    for r in 0..batch.num_rows() {
        let mut d = Map::new();
        for (name, vals) in &cols {
            d.insert(name.clone(), vals[r].clone());
        }
        out.push(d);
    }
    Ok(())
}

fn float(x: f64) -> Value {
    // NaN and infinities have no JSON form; a None stands in for them.
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// One value per row of `a`.
fn values(a: &dyn Array) -> std::result::Result<Vec<Value>, String> {
    macro_rules! prim {
        ($t:ty, $f:expr) => {
            a.as_primitive::<$t>()
                .iter()
                .map(|v| v.map($f).unwrap_or(Value::Null))
                .collect()
        };
    }
    let nested = |i: usize, inner: &dyn Array| -> std::result::Result<Value, String> {
        Ok(if a.is_null(i) {
            Value::Null
        } else {
            Value::Array(values(inner)?)
        })
    };
    Ok(match a.data_type() {
        DataType::Null => vec![Value::Null; a.len()],
        DataType::Boolean => a
            .as_boolean()
            .iter()
            .map(|v| v.map(Value::Bool).unwrap_or(Value::Null))
            .collect(),
        DataType::Int8 => prim!(Int8Type, Value::from),
        DataType::Int16 => prim!(Int16Type, Value::from),
        DataType::Int32 => prim!(Int32Type, Value::from),
        DataType::Int64 => prim!(Int64Type, Value::from),
        DataType::UInt8 => prim!(UInt8Type, Value::from),
        DataType::UInt16 => prim!(UInt16Type, Value::from),
        DataType::UInt32 => prim!(UInt32Type, Value::from),
        DataType::UInt64 => prim!(UInt64Type, Value::from),
        DataType::Float16 => prim!(Float16Type, |x: half::f16| float(x.to_f64())),
        DataType::Float32 => prim!(Float32Type, |x: f32| float(x as f64)),
        DataType::Float64 => prim!(Float64Type, float),
        DataType::Utf8 => strings(a.as_string::<i32>().iter()),
        DataType::LargeUtf8 => strings(a.as_string::<i64>().iter()),
        DataType::Utf8View => strings(a.as_string_view().iter()),
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            (0..a.len())
                .map(|i| nested(i, l.value(i).as_ref()))
                .collect::<std::result::Result<_, _>>()?
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            (0..a.len())
                .map(|i| nested(i, l.value(i).as_ref()))
                .collect::<std::result::Result<_, _>>()?
        }
        DataType::FixedSizeList(_, _) => {
            let l = a.as_fixed_size_list();
            (0..a.len())
                .map(|i| nested(i, l.value(i).as_ref()))
                .collect::<std::result::Result<_, _>>()?
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let cols = fields
                .iter()
                .zip(s.columns())
                .map(|(f, c)| {
                    values(c.as_ref())
                        .map(|v| (f.name().clone(), v))
                        .map_err(|m| format!("field '{}': {m}", f.name()))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Value::Null
                    } else {
                        Value::Object(cols.iter().map(|(n, v)| (n.clone(), v[i].clone())).collect())
                    }
                })
                .collect()
        }
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let dict = values(d.values().as_ref())?;
            d.normalized_keys()
                .into_iter()
                .enumerate()
                .map(|(i, k)| {
                    if a.is_null(i) {
                        Value::Null
                    } else {
                        dict[k].clone()
                    }
                })
                .collect()
        }
        other => {
            return Err(format!(
                "Arrow type {other} has no JSON value infer-eval reads (integers, floats, strings, booleans, lists, structs and dictionaries of them are read)"
            ))
        }
    })
}

fn strings<'a>(it: impl Iterator<Item = Option<&'a str>>) -> Vec<Value> {
    it.map(|v| {
        v.map(|s| Value::String(s.to_string()))
            .unwrap_or(Value::Null)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, BooleanArray, Float32Array, StructArray};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let q: ArrayRef = Arc::new(arrow_array::StringArray::from(vec![Some("a"), None]));
        let mut lb = ListBuilder::new(StringBuilder::new());
        lb.values().append_value("x");
        lb.values().append_value("y");
        lb.append(true);
        lb.append(false);
        let choices: ArrayRef = Arc::new(lb.finish());
        let mut ib = Int64Builder::new();
        ib.append_value(3);
        ib.append_null();
        let label: ArrayRef = Arc::new(ib.finish());
        let w: ArrayRef = Arc::new(Float32Array::from(vec![0.5, f32::NAN]));
        let ok: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        let st: ArrayRef = Arc::new(StructArray::from(vec![(
            Arc::new(Field::new("n", DataType::Int64, true)),
            Arc::new(arrow_array::Int64Array::from(vec![1, 2])) as ArrayRef,
        )]));
        let schema = Schema::new(vec![
            Field::new("q", DataType::Utf8, true),
            Field::new("choices", choices.data_type().clone(), true),
            Field::new("label", DataType::Int64, true),
            Field::new("w", DataType::Float32, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("st", st.data_type().clone(), true),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![q, choices, label, w, ok, st]).unwrap()
    }

    #[test]
    fn rows_are_the_python_values() {
        let mut out = Vec::new();
        rows(Path::new("t.parquet"), &batch(), &mut out).unwrap();
        assert_eq!(
            Value::Object(out[0].clone()),
            serde_json::json!({"q": "a", "choices": ["x", "y"], "label": 3, "w": 0.5, "ok": true, "st": {"n": 1}})
        );
        assert_eq!(
            Value::Object(out[1].clone()),
            serde_json::json!({"q": null, "choices": null, "label": null, "w": null, "ok": false, "st": {"n": 2}})
        );
    }

    #[test]
    fn ipc_stream_and_parquet_read_back_the_same_rows() {
        let b = batch();
        let mut ipc = Vec::new();
        {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut ipc, &b.schema()).unwrap();
            w.write(&b).unwrap();
            w.finish().unwrap();
        }
        let mut pq = Vec::new();
        {
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut pq, b.schema(), None).unwrap();
            w.write(&b).unwrap();
            w.close().unwrap();
        }
        let a = read_ipc_stream(Path::new("t.arrow"), &ipc).unwrap();
        let p = read_parquet(Path::new("t.parquet"), &pq).unwrap();
        assert_eq!(a, p);
        assert_eq!(a.len(), 2);
        let e = read_parquet(Path::new("bad.parquet"), &pq[..pq.len() - 9]).unwrap_err();
        assert!(e.to_string().contains("bad.parquet: Parquet error"), "{e}");
        let e = read_ipc_stream(Path::new("bad.arrow"), b"not arrow").unwrap_err();
        assert!(
            e.to_string().contains("bad.arrow: Arrow IPC stream:"),
            "{e}"
        );
    }

    #[test]
    fn a_binary_column_is_refused_by_name() {
        let bin: ArrayRef = Arc::new(arrow_array::BinaryArray::from(vec![&b"x"[..]]));
        let schema = Schema::new(vec![Field::new("img", DataType::Binary, false)]);
        let b = RecordBatch::try_new(Arc::new(schema), vec![bin]).unwrap();
        let e = rows(Path::new("t.arrow"), &b, &mut Vec::new()).unwrap_err();
        assert!(
            e.to_string().contains("column 'img': Arrow type Binary"),
            "{e}"
        );
    }
}
