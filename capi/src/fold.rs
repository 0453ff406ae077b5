//! Planned folds through the C ABI: make a plan, fold one of its parts, commit it. What a
//! worker of any engine (a Spark task, a Kubernetes indexed Job, a Ray actor) calls to fold
//! its share of a tree; every result comes back as JSON in library-owned bytes.

use crate::status::sheaf_status::*;
use crate::status::{guard, sheaf_status, Failure};
use crate::{c_os_text, required, sheaf_bytes};
use sheaf::fold::parts::{self, Listing, PlanKind};
use sheaf::fold::PathRange;
use sheaf::fold::{Compression, ContainerLimits, FoldOptions};
use sheaf::progress::Silent;
use std::ffi::c_char;
use std::path::Path;

/// What `sheaf_fold_plan` takes: a fold's source, destination and settings as JSON.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanRequest {
    src: String,
    #[serde(default)]
    dst: Option<String>,
    partitions: u32,
    #[serde(default = "default_threshold")]
    threshold: u64,
    #[serde(default = "default_container_size")]
    container_size: u64,
    #[serde(default = "default_max_entries")]
    max_entries: usize,
    #[serde(default = "default_compress")]
    compress: String,
    #[serde(default)]
    append: bool,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    in_place: bool,
    #[serde(default)]
    remove_originals: bool,
    #[serde(default)]
    surveys: Option<Vec<parts::Survey>>,
    #[serde(default)]
    sample: Option<parts::RowSample>,
}

fn default_threshold() -> u64 {
    sheaf::fold::DEFAULT_THRESHOLD
}

fn default_container_size() -> u64 {
    sheaf::fold::DEFAULT_CONTAINER_SIZE
}

fn default_max_entries() -> usize {
    sheaf::fold::DEFAULT_MAX_ENTRIES
}

fn default_compress() -> String {
    "none".into()
}

/// Plans a fold for many workers. `request` is a NUL-terminated JSON object: `src`, `dst`
/// (paths or URIs), `partitions` (the most parts), and optionally `threshold`,
/// `container_size` (bytes), `max_entries`, `compress` (`none`, `zstd[:L]`, `auto[:L]`),
/// `append` and `prefix` (add to the published dataset `dst` under `prefix`), `in_place` (no
/// `dst`: fold `src` where it lies) and `remove_originals` (with `in_place`: the commit then
/// deletes the folded originals). The plan is
/// written into `dst`'s staging area; `*out` receives it as JSON, with its `location` (what
/// `sheaf_fold_part` and `sheaf_fold_commit` take) and `resumed` (true when an unfinished
/// plan of the same fold was found and is continued, its finished parts kept). Free `*out` with `sheaf_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn sheaf_fold_plan(
    request: *const c_char,
    out: *mut sheaf_bytes,
) -> sheaf_status {
    guard(|| {
        let request: PlanRequest = unsafe { json_request(request, "plan") }?;
        let out = unsafe { required(out, "out") }?;
        let compression = request
            .compress
            .parse::<Compression>()
            .map_err(|e| Failure::new(SHEAF_INVALID_ARGUMENT, format!("compress: {e}")))?;
        let options = FoldOptions {
            threshold: request.threshold,
            limits: ContainerLimits {
                bytes: request.container_size,
                entries: request.max_entries,
            },
            compression,
            remove_originals: request.remove_originals,
        };
        let (dst, kind) = match (&request.dst, request.in_place, request.append) {
            (_, true, _) => (&request.src, PlanKind::InPlace),
            (Some(dst), _, true) => (
                dst,
                PlanKind::Append {
                    prefix: request.prefix.as_bytes(),
                },
            ),
            (Some(dst), _, false) => (dst, PlanKind::NewRoot),
            (None, false, _) => {
                return Err(Failure::new(
                    SHEAF_INVALID_ARGUMENT,
                    "plan request: `dst` is needed unless `in_place`",
                ))
            }
        };
        let listing = match (request.surveys, request.sample) {
            (None, None) => Listing::Walk,
            (Some(surveys), None) => Listing::Surveys(surveys),
            (None, Some(sample)) => Listing::Sample(sample),
            (Some(_), Some(_)) => {
                return Err(Failure::new(
                    SHEAF_INVALID_ARGUMENT,
                    "plan request: give `surveys` or `sample`, not both",
                ))
            }
        };
        let planned = parts::plan(
            Path::new(&request.src),
            Path::new(dst),
            kind,
            &options,
            request.partitions,
            listing,
            &Silent,
        )?;
        let mut value = serde_json::to_value(&planned.plan).expect("a plan serializes");
        value["location"] = serde_json::Value::String(planned.location);
        value["resumed"] = serde_json::Value::Bool(planned.resumed);
        give(out, serde_json::to_vec(&value).expect("JSON serializes"));
        Ok(SHEAF_OK)
    })
}

/// Folds part `part` of the plan at `plan` (its location, NUL-terminated), writing its
/// containers and result into the plan's dataset; a part that already finished is not folded
/// again. `*out` receives the part's summary as JSON. Free it with `sheaf_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn sheaf_fold_part(
    plan: *const c_char,
    part: u32,
    out: *mut sheaf_bytes,
) -> sheaf_status {
    guard(|| {
        let plan = unsafe { c_os_text(plan, "plan") }?;
        let out = unsafe { required(out, "out") }?;
        let done = parts::fold_part(Path::new(plan), part, &Silent)?;
        give(out, serde_json::to_vec(&done).expect("JSON serializes"));
        Ok(SHEAF_OK)
    })
}

/// Commits the plan at `plan` once every part has finished: one generation, committed once
/// however often this is called. `*out` receives the fold's summary as JSON. Free it with
/// `sheaf_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn sheaf_fold_commit(
    plan: *const c_char,
    out: *mut sheaf_bytes,
) -> sheaf_status {
    guard(|| {
        let plan = unsafe { c_os_text(plan, "plan") }?;
        let out = unsafe { required(out, "out") }?;
        let summary = parts::commit(Path::new(plan), &Silent)?;
        give(out, serde_json::to_vec(&summary).expect("JSON serializes"));
        Ok(SHEAF_OK)
    })
}

/// What `sheaf_fold_branches` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchesRequest {
    src: String,
    /// The most ranges wanted.
    ranges: usize,
}

/// Cuts the tree at `src` into at most `ranges` ranges that can be surveyed apart, listing
/// only its top levels. `request` is a NUL-terminated JSON object `{"src": ..., "ranges":
/// N}`; `*out` receives `{"ranges": [{"from_hex": ..., "until_hex": ...}, ...]}` in path
/// order (null: from the start, to the end), each what `sheaf_fold_survey` takes. Free `*out`
/// with `sheaf_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn sheaf_fold_branches(
    request: *const c_char,
    out: *mut sheaf_bytes,
) -> sheaf_status {
    guard(|| {
        let request: BranchesRequest = unsafe { json_request(request, "branches") }?;
        let out = unsafe { required(out, "out") }?;
        let points = parts::branch_points(Path::new(&request.src), request.ranges)?;
        let ranges: Vec<_> = parts::ranges_between(&points)
            .iter()
            .map(|range| {
                let (from_hex, until_hex) = parts::range_hex(range);
                serde_json::json!({ "from_hex": from_hex, "until_hex": until_hex })
            })
            .collect();
        let json = serde_json::json!({ "ranges": ranges });
        give(out, serde_json::to_vec(&json).expect("JSON serializes"));
        Ok(SHEAF_OK)
    })
}

/// What `sheaf_fold_survey` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SurveyRequest {
    src: String,
    #[serde(default)]
    from_hex: Option<String>,
    #[serde(default)]
    until_hex: Option<String>,
    #[serde(default = "default_threshold")]
    threshold: u64,
    #[serde(default)]
    in_place: bool,
    /// The most paths sampled.
    limit: usize,
}

/// Lists one range of the tree at `src` (a task's share of a plan's listing). `request` is a
/// NUL-terminated JSON object: `src`, the range (`from_hex`, `until_hex`, from
/// `sheaf_fold_branches`), `threshold` and `in_place` as the plan will have them, and `limit`
/// (the most paths sampled). `*out` receives the survey as JSON, what `sheaf_fold_plan` takes
/// in `surveys`. Free `*out` with `sheaf_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn sheaf_fold_survey(
    request: *const c_char,
    out: *mut sheaf_bytes,
) -> sheaf_status {
    guard(|| {
        let request: SurveyRequest = unsafe { json_request(request, "survey") }?;
        let out = unsafe { required(out, "out") }?;
        let range: PathRange =
            parts::range_of_hex(request.from_hex.as_deref(), request.until_hex.as_deref())?;
        let survey = parts::survey(
            Path::new(&request.src),
            range,
            request.threshold,
            request.in_place,
            request.limit,
            &Silent,
        )?;
        give(out, serde_json::to_vec(&survey).expect("JSON serializes"));
        Ok(SHEAF_OK)
    })
}

/// The NUL-terminated JSON object `request` as a `what` request.
///
/// # Safety
/// `request` is null or a NUL-terminated string.
pub(crate) unsafe fn json_request<T: serde::de::DeserializeOwned>(
    request: *const c_char,
    what: &str,
) -> Result<T, Failure> {
    let text = unsafe { c_os_text(request, "request") }?;
    serde_json::from_slice(text.as_encoded_bytes())
        .map_err(|e| Failure::new(SHEAF_INVALID_ARGUMENT, format!("{what} request: {e}")))
}

/// Hands `json` to the caller as library-owned bytes.
pub(crate) fn give(out: &mut sheaf_bytes, json: Vec<u8>) {
    let bytes = Box::new(sheaf::read::Buffer::from_vec(json));
    out.data = bytes.as_ptr();
    out.len = bytes.len();
    out.owner = Box::into_raw(bytes).cast();
}
