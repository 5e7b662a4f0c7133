//! The HTML report of a study (`horizon report STUDY -o report.html`): the plots the method asks
//! for (docs/method.md section 4), in one self-contained file.
//!
//! Two steps, each a pure function:
//! - [`data::extract`]: a study's analysis, records and reports in ([`data::ReportInput`]), the
//!   numbers every plot draws out ([`data::Report`]): histograms of where the best checkpoints
//!   fall, the best trials' curves (downsampled to [`data::MAX_CURVE_POINTS`]), axis and
//!   isolation plots, the learning-rate sweep, the ladder's or rounds' rungs and schedules;
//! - [`html::render`]: the report as HTML with inline SVG ([`svg`], written by hand: a frame with
//!   log or linear axes and a handful of marks, tooltips as SVG `<title>`s, so no script and no
//!   dependency) and inline CSS. Sections without data are left out.
//!
//! Everything a trainer wrote (parameter values, messages) is escaped ([`svg::escape`]).

pub mod data;
pub mod html;
pub mod svg;

pub use data::{Report, ReportInput, StudyCard, extract};
pub use html::render;
