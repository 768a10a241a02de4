//! Plots of reports (plotters; SVG or PNG by the output's extension):
//!
//! - [`write_run`]: one row per client group: outcomes per second of
//!   intended start drawn as steps (each count holds for its whole second,
//!   the last second included), the model's expected accepted count drawn
//!   over them as a dashed step line, and a panel of the accepted attempts'
//!   p50 and p99 latency per second (log scale).
//! - [`write_spectrum`]: latency by percentile, the x axis log-scaled in
//!   "nines" (0 %, 90 %, 99 %, 99.9 % ...) as HdrHistogram's plotter draws it,
//!   overlaying several runs or groups.
//!
//! Text is drawn with a TrueType font loaded at run time ([`FONT_PATHS`], or
//! the file named by `GATE_LOAD_FONT`); Debian's `fonts-dejavu-core` has it.

use crate::report::{GroupReport, Report, OUTCOMES};
use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Fonts tried in order (after `GATE_LOAD_FONT`).
pub const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Colours of the outcomes, in [`OUTCOMES`] order (ColorBrewer Dark2).
const COLOURS: [RGBColor; 5] = [
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x75, 0x70, 0xb3),
    RGBColor(0xe7, 0x29, 0x8a),
    RGBColor(0x66, 0x66, 0x66),
];

/// Colours of overlaid spectrum curves (ColorBrewer Set1), reused in turn.
const CURVE_COLOURS: [RGBColor; 8] = [
    RGBColor(0xe4, 0x1a, 0x1c),
    RGBColor(0x37, 0x7e, 0xb8),
    RGBColor(0x4d, 0xaf, 0x4a),
    RGBColor(0x98, 0x4e, 0xa3),
    RGBColor(0xff, 0x7f, 0x00),
    RGBColor(0xa6, 0x56, 0x28),
    RGBColor(0xf7, 0x81, 0xbf),
    RGBColor(0x33, 0x33, 0x33),
];

const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);

/// Draws a chart's series legend the way every panel does: a translucent
/// white box with a thin border, at `position`, text of `font_px`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font_px: u32,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", font_px))
        .draw()
        .map_err(err)
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// Registers the plot font once (plotters draws text with it, in SVG too,
/// to size labels).
pub fn ensure_font() -> Result<()> {
    static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let env = std::env::var("GATE_LOAD_FONT").ok();
        let candidates: Vec<String> = env
            .iter()
            .cloned()
            .chain(FONT_PATHS.iter().map(|s| s.to_string()))
            .collect();
        for p in &candidates {
            let Ok(bytes) = std::fs::read(p) else {
                continue;
            };
            // The font must live as long as the process: plotters keeps it.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("font {p} is not a TrueType font plotters can read"))?;
            return Ok(());
        }
        Err(format!(
            "no font for the plot's text: tried {} (install the Debian package \
             fonts-dejavu-core, or set GATE_LOAD_FONT to a .ttf file)",
            candidates.join(", ")
        ))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// The image format, by the output path's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// `.svg` or `.png` (case-insensitive); anything else is an error naming it.
    pub fn of(path: &Path) -> Result<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => bail!(
                "plot output {}: the name must end in .svg or .png",
                path.display()
            ),
        }
    }
}

/// Draws with `draw` on an SVG or PNG canvas of `size` pixels at `path`.
fn with_canvas(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
    draw_png: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    ensure_font()?;
    match Format::of(path)? {
        Format::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            draw(&root)?;
            root.present()
                .map_err(err)
                .with_context(|| format!("writing {}", path.display()))
        }
        Format::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            draw_png(&root)?;
            root.present()
                .map_err(err)
                .with_context(|| format!("writing {}", path.display()))
        }
    }
}

/// Step-line points for per-second values: value `v[i]` holds over
/// `[i, i + 1)`, so a steady count is a flat line over its whole seconds
/// (the last one included) and drops vertically at the edges.
pub fn step_points(v: &[f64]) -> Vec<(f64, f64)> {
    let mut pts = Vec::with_capacity(v.len() * 2 + 2);
    for (i, &y) in v.iter().enumerate() {
        pts.push((i as f64, y));
        pts.push((i as f64 + 1.0, y));
    }
    pts
}

/// Expected accepted count per group and second, in the report's group
/// order (from [`crate::model::expected_accepted_per_second`]); `None` draws
/// no model line for that group.
pub type Expected = Vec<Option<Vec<u64>>>;

/// The model's expected accepted count per second for each of `report`'s
/// groups (matched by name to `sc`'s groups); `None` when `sc` has no
/// `[gate]`.
pub fn expected_from_model(sc: &crate::scenario::Scenario, report: &Report) -> Option<Expected> {
    let gate = sc.gate.as_ref()?;
    let per = crate::model::expected_accepted_per_second(sc, gate);
    Some(
        report
            .groups
            .iter()
            .map(|g| {
                sc.groups
                    .iter()
                    .position(|s| s.name == g.name)
                    .and_then(|i| per.get(i).cloned())
            })
            .collect(),
    )
}

/// Writes the run plot of `report` to `path` (`.svg` or `.png`): per group,
/// outcomes per second with the model's expected accepted count, and p50/p99
/// latency of accepted attempts per second.
pub fn write_run(report: &Report, expected: Option<&Expected>, path: &Path) -> Result<()> {
    let n = report.groups.len().max(1);
    let size = (1300u32, u32::try_from(300 * n + 50).unwrap_or(8000));
    with_canvas(
        path,
        size,
        |root| draw_run(root, report, expected),
        |root| draw_run(root, report, expected),
    )
}

fn draw_run<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
    expected: Option<&Expected>,
) -> Result<()> {
    let root = root
        .titled(
            &format!("gate-load: {} against {}", report.scenario, report.target),
            ("sans-serif", 20),
        )
        .map_err(err)?;
    let rows = root.split_evenly((report.groups.len().max(1), 1));
    // One time axis for every panel: the longest group.
    let secs = report
        .groups
        .iter()
        .map(|g| g.per_second.len())
        .max()
        .unwrap_or(1)
        .max(1);
    for (gi, (g, row)) in report.groups.iter().zip(rows.iter()).enumerate() {
        let (left, right) = row.split_horizontally(row.dim_in_pixel().0 * 62 / 100);
        let exp = expected.and_then(|e| e.get(gi)).and_then(|e| e.as_ref());
        outcomes_panel(&left, g, exp, secs)?;
        latency_panel(&right, g, secs)?;
    }
    Ok(())
}

fn outcomes_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    g: &GroupReport,
    expected: Option<&Vec<u64>>,
    secs: usize,
) -> Result<()> {
    let ymax = g
        .per_second
        .iter()
        .flat_map(|b| b.iter().copied())
        .chain(expected.into_iter().flatten().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{}: outcomes per second of intended start", g.name),
            ("sans-serif", 15),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        // Head room above the highest step for the legend.
        .build_cartesian_2d(0f64..secs as f64, 0f64..ymax * 1.4)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("second of intended start")
        .y_desc("attempts")
        .x_labels(secs.min(20) + 1)
        .x_label_formatter(&|x| whole_seconds(*x))
        .y_labels(count_ticks(ymax * 1.4))
        .y_label_formatter(&|y| whole_seconds(*y))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    for (o, colour) in OUTCOMES.iter().zip(COLOURS.iter()) {
        let idx = o.index();
        if g.per_second.iter().all(|b| b[idx] == 0) {
            continue;
        }
        let v: Vec<f64> = g.per_second.iter().map(|b| b[idx] as f64).collect();
        let c = *colour;
        chart
            .draw_series(LineSeries::new(step_points(&v), c.stroke_width(2)))
            .map_err(err)?
            .label(o.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    if let Some(e) = expected {
        let v: Vec<f64> = e.iter().map(|&x| x as f64).collect();
        chart
            .draw_series(DashedLineSeries::new(
                step_points(&v),
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(err)?
            .label("model: expected accepted")
            .legend(|(x, y)| {
                // Dashed in the legend too.
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (6, 0)], BLACK)
                    + PathElement::new(vec![(10, 0), (16, 0)], BLACK)
            });
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight, 12)
}

/// What a latency panel says for a group with no accepted attempt.
pub const NO_LATENCY: &str = "no accepted connections: no latency to show";

fn latency_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    g: &GroupReport,
    secs: usize,
) -> Result<()> {
    let per: Vec<Option<(f64, f64)>> = g
        .per_second_latency_us
        .iter()
        .map(|h| {
            (!h.0.is_empty()).then(|| {
                (
                    h.0.value_at_quantile(0.5) as f64 / 1000.0,
                    h.0.value_at_quantile(0.99) as f64 / 1000.0,
                )
            })
        })
        .collect();
    let title = format!("{}: accepted latency per second", g.name);
    if per.iter().all(Option::is_none) {
        // Nothing to plot (a deny-listed group): say so instead of an
        // empty axis and an empty legend.
        let area = area.titled(&title, ("sans-serif", 15)).map_err(err)?;
        let (w, h) = area.dim_in_pixel();
        let style = TextStyle::from(("sans-serif", 15).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ),
        );
        area.draw(&Text::new(NO_LATENCY, (w as i32 / 2, h as i32 / 2), style))
            .map_err(err)?;
        return Ok(());
    }
    let vals = per.iter().flatten().flat_map(|(a, b)| [*a, *b]);
    let (lo, hi) = vals.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi == 0.0 {
        (0.01, 1.0)
    } else {
        // Head room (on the log scale) above the highest step for the legend.
        ((lo / 2.0).max(0.001), hi * 12.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..secs as f64, (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("second of intended start")
        .y_desc("ms from intended start")
        .x_labels(secs.min(20) + 1)
        .x_label_formatter(&|x| whole_seconds(*x))
        .y_label_formatter(&|y| log_label(*y))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    let series: [(&str, usize, RGBColor); 2] = [
        ("p50", 0, RGBColor(0x37, 0x7e, 0xb8)),
        ("p99", 1, RGBColor(0xe4, 0x1a, 0x1c)),
    ];
    for (name, which, c) in series {
        // A second without accepted attempts breaks the line.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (i, p) in per.iter().enumerate() {
            match p {
                Some((a, b)) => {
                    let y = if which == 0 { *a } else { *b };
                    if let Some(r) = runs.last_mut() {
                        r.push((i as f64, y));
                        r.push((i as f64 + 1.0, y));
                    }
                }
                None => runs.push(Vec::new()),
            }
        }
        let mut first = true;
        for r in runs.into_iter().filter(|r| !r.is_empty()) {
            let s = chart
                .draw_series(LineSeries::new(r, c.stroke_width(2)))
                .map_err(err)?;
            if first {
                s.label(name).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
                first = false;
            }
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight, 12)
}

/// How many ticks a count axis from 0 to `top` asks plotters for: at most
/// one per whole number (so small counts do not get fractional ticks), at
/// most 10.
fn count_ticks(top: f64) -> usize {
    (top.max(0.0).floor() as usize + 1).clamp(2, 10)
}

/// Labels only whole numbers (plotters may pick fractional tick positions,
/// which rounded to integers would repeat a label: "2, 2, 2, 1, 1, 0"):
/// whole seconds on the time axis, whole counts on the attempts axis.
fn whole_seconds(x: f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

/// Labels a log axis at 1, 2 and 5 times a power of ten only.
fn log_label(y: f64) -> String {
    if y <= 0.0 {
        return String::new();
    }
    let m = y / 10f64.powf(y.log10().floor());
    if [1.0, 2.0, 5.0, 10.0].iter().any(|k| (m - k).abs() < 1e-6) {
        trim_number(y)
    } else {
        String::new()
    }
}

fn trim_number(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// One curve of a percentile-spectrum plot.
pub struct Curve<'a> {
    pub label: String,
    pub hist: &'a Histogram<u64>,
}

/// Most "nines" the spectrum's x axis shows (99.9999 %).
const MAX_NINES_X: f64 = 1e6;

/// Points of `h`'s percentile spectrum: x = 1 / (1 - quantile) (so 10 is
/// 90 %, 1000 is 99.9 %), y = latency in ms, as HdrHistogram's
/// `outputPercentileDistribution` lists them (5 steps per halving of the
/// distance to 100 %). The last point (the maximum) is placed at the x of
/// the last finite quantile's next "half-distance" step, capped.
pub fn spectrum_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let x = if q >= 1.0 {
            f64::INFINITY
        } else {
            1.0 / (1.0 - q)
        };
        let y = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
        pts.push((x, y));
    }
    let last_finite = pts
        .iter()
        .map(|p| p.0)
        .filter(|x| x.is_finite())
        .fold(1f64, f64::max);
    for p in &mut pts {
        if !p.0.is_finite() {
            p.0 = (last_finite * 2.0).min(MAX_NINES_X);
        }
        p.0 = p.0.min(MAX_NINES_X);
    }
    pts
}

/// The label of a spectrum x position: 1 -> "0%", 10 -> "90%", 1000 ->
/// "99.9%".
pub fn nines_label(x: f64) -> String {
    if x <= 1.0 {
        return "0%".into();
    }
    let pct = 100.0 * (1.0 - 1.0 / x);
    let digits = (x.log10().ceil() as usize).saturating_sub(2);
    let s = format!("{pct:.digits$}");
    format!("{s}%")
}

/// Writes a latency-by-percentile plot of `curves` (overlaid) to `path`
/// (`.svg` or `.png`).
pub fn write_spectrum(title: &str, curves: &[Curve<'_>], path: &Path) -> Result<()> {
    if curves.iter().all(|c| c.hist.is_empty()) {
        bail!("spectrum plot {}: every histogram is empty", path.display());
    }
    with_canvas(
        path,
        (1000, 600),
        |root| draw_spectrum(root, title, curves),
        |root| draw_spectrum(root, title, curves),
    )
}

fn draw_spectrum<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    curves: &[Curve<'_>],
) -> Result<()> {
    let all: Vec<Vec<(f64, f64)>> = curves
        .iter()
        .map(|c| {
            if c.hist.is_empty() {
                Vec::new()
            } else {
                spectrum_points(c.hist)
            }
        })
        .collect();
    let xmax = all
        .iter()
        .flatten()
        .map(|p| p.0)
        .fold(1000f64, f64::max)
        .min(MAX_NINES_X);
    // Round the axis up to a whole "nine".
    let xmax = 10f64.powf(xmax.log10().ceil());
    let ymax = all
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(0f64, f64::max)
        .max(0.001);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .margin_right(45)
        .x_label_area_size(40)
        .y_label_area_size(70)
        // Head room above the highest curve for the legend.
        .build_cartesian_2d((1f64..xmax).log_scale(), 0f64..ymax * 1.25)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| trim_number(*y))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    for (i, (c, pts)) in curves.iter().zip(all).enumerate() {
        if pts.is_empty() {
            continue;
        }
        let colour = CURVE_COLOURS[i % CURVE_COLOURS.len()];
        chart
            .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
            .map_err(err)?
            .label(format!("{} (n = {})", c.label, c.hist.len()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft, 13)
}

/// Which histogram of a group a spectrum shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Metric {
    /// Accepted attempts, from intended start.
    Accepted,
    /// Handshake of accepted attempts, from the connect() call.
    Handshake,
    /// Time to first response byte (payload runs).
    Ttfb,
    /// Transfer time (payload runs).
    Transfer,
}

impl Metric {
    pub fn of(self, g: &GroupReport) -> Option<&Histogram<u64>> {
        match self {
            Metric::Accepted => g.latency(crate::report::Outcome::Accepted),
            Metric::Handshake => Some(&g.service_us.0),
            Metric::Ttfb => g.payload.as_ref().map(|p| &p.ttfb_us.0),
            Metric::Transfer => g.payload.as_ref().map(|p| &p.transfer_us.0),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accepted => "accepted latency from intended start",
            Metric::Handshake => "handshake time",
            Metric::Ttfb => "time to first byte",
            Metric::Transfer => "transfer time",
        }
    }
}

/// The curves of `metric` for every group of every `(label, report)`,
/// labelled `label: group` (just the group when there is one report).
pub fn curves_of<'a>(reports: &'a [(String, Report)], metric: Metric) -> Vec<Curve<'a>> {
    let mut out = Vec::new();
    for (label, r) in reports {
        for g in &r.groups {
            if let Some(h) = metric.of(g).filter(|h| !h.is_empty()) {
                let label = if reports.len() == 1 {
                    g.name.clone()
                } else {
                    format!("{label}: {}", g.name)
                };
                out.push(Curve { label, hist: h });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_without_accepted_attempts_says_so_instead_of_an_empty_panel() {
        use crate::report::{Outcome, RunInfo, FORMAT};
        let mut served = GroupReport::new("served", 3, 2);
        for i in 0..3 {
            served.counts.bump(Outcome::Accepted);
            served.per_second[0][0] += 1;
            served.per_second_latency_us[0].0.record(100 + i).unwrap();
        }
        let mut denied = GroupReport::new("denied", 4, 2);
        for _ in 0..4 {
            denied.counts.bump(Outcome::Refused);
            denied.per_second[0][Outcome::Refused.index()] += 1;
        }
        let r = Report {
            format: FORMAT.into(),
            scenario: "s".into(),
            target: "127.0.0.1:1".into(),
            runs: vec![RunInfo {
                host: "h".into(),
                started_unix_ms: 0,
                wall_s: 2.0,
                max_lag_us: 0,
                late_attempts: 0,
                cpu_user_s: 0.0,
                cpu_system_s: 0.0,
            }],
            groups: vec![served, denied],
        };
        let path = std::env::temp_dir().join(format!("plot-empty-{}.svg", std::process::id()));
        write_run(&r, None, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        // One message (the denied group), one latency legend (the served
        // group: p50 and p99 once each).
        assert_eq!(svg.matches(NO_LATENCY).count(), 1);
        assert_eq!(svg.matches(">\np99\n<").count(), 1, "{svg}");
    }

    #[test]
    fn steps_cover_every_second_including_the_last() {
        // A steady 400/s from second 1 to 3 of a 3-second run: flat at 400
        // over [1, 3), vertical edges, and the last second drawn to x = 3.
        let p = step_points(&[0.0, 400.0, 400.0]);
        assert_eq!(
            p,
            vec![
                (0.0, 0.0),
                (1.0, 0.0),
                (1.0, 400.0),
                (2.0, 400.0),
                (2.0, 400.0),
                (3.0, 400.0)
            ]
        );
    }

    #[test]
    fn nines_labels() {
        assert_eq!(nines_label(1.0), "0%");
        assert_eq!(nines_label(10.0), "90%");
        assert_eq!(nines_label(100.0), "99%");
        assert_eq!(nines_label(1000.0), "99.9%");
        assert_eq!(nines_label(1e5), "99.999%");
    }

    #[test]
    fn spectrum_runs_from_the_minimum_to_the_maximum() {
        let mut h = crate::report::new_histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let p = spectrum_points(&h);
        assert!((p[0].1 - 0.001).abs() < 1e-9, "{:?}", p[0]);
        let last = p.last().unwrap();
        assert!((last.1 - 10.0).abs() < 0.01, "{last:?}");
        // x grows, latency never falls.
        assert!(p.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        // The median sits at x = 2 with ~5 ms.
        let med = p.iter().find(|q| (q.0 - 2.0).abs() < 1e-9).unwrap();
        assert!((med.1 - 5.0).abs() < 0.01, "{med:?}");
    }

    #[test]
    fn format_by_extension() {
        assert_eq!(Format::of(Path::new("a.SVG")).unwrap(), Format::Svg);
        assert_eq!(Format::of(Path::new("a.png")).unwrap(), Format::Png);
        let e = Format::of(Path::new("a.jpg")).unwrap_err().to_string();
        assert!(e.contains("a.jpg") && e.contains(".svg or .png"), "{e}");
    }

    /// The labels plotters' own tick positions get on a count axis from 0
    /// to `top`, as the outcomes panel configures it.
    fn count_axis_labels(top: f64) -> Vec<(f64, String)> {
        use plotters::coord::ranged1d::Ranged;
        let axis: plotters::coord::types::RangedCoordf64 = (0f64..top).into();
        axis.key_points(count_ticks(top))
            .into_iter()
            .map(|y| (y, whole_seconds(y)))
            .collect()
    }

    #[test]
    fn tiny_counts_get_one_label_per_whole_number() {
        // The reported case: a group at 2/s (axis 0..2.8) was labelled
        // "2, 2, 2, 1, 1, 0".
        let labels: Vec<String> = count_axis_labels(2.0 * 1.4)
            .into_iter()
            .map(|(_, l)| l)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(labels, vec!["0", "1", "2"]);
    }

    proptest::proptest! {
        /// The kind of the y-label bug (a fractional tick rounded to a
        /// label another tick has): on any count axis, every label is the
        /// whole number of its tick, no label repeats, and at least two
        /// ticks are labelled.
        #[test]
        fn count_axis_labels_are_whole_and_distinct(
            ymax in proptest::prop_oneof![1u32..30, 1u32..200_000]
        ) {
            let labels = count_axis_labels(f64::from(ymax) * 1.4);
            let shown: Vec<&(f64, String)> = labels.iter().filter(|(_, l)| !l.is_empty()).collect();
            proptest::prop_assert!(shown.len() >= 2, "{labels:?}");
            let mut seen = std::collections::HashSet::new();
            for (y, l) in &shown {
                proptest::prop_assert_eq!(l.parse::<f64>().ok(), Some(y.round()));
                proptest::prop_assert!((y - y.round()).abs() < 1e-6);
                proptest::prop_assert!(seen.insert(l.clone()), "{labels:?}");
            }
        }

        /// The kind of the plot bug (lines between per-second points: a
        /// count drawn as a ramp, the last second cut off): every count holds
        /// flat over exactly its own second, and the steps cover the run.
        #[test]
        fn every_count_is_flat_over_its_whole_second(
            v in proptest::collection::vec(0u32..100_000, 1..40)
        ) {
            let v: Vec<f64> = v.into_iter().map(f64::from).collect();
            let p = step_points(&v);
            proptest::prop_assert_eq!(p.len(), 2 * v.len());
            proptest::prop_assert_eq!(p[0].0, 0.0);
            proptest::prop_assert_eq!(p[p.len() - 1].0, v.len() as f64);
            for (i, y) in v.iter().enumerate() {
                proptest::prop_assert_eq!(p[2 * i], (i as f64, *y));
                proptest::prop_assert_eq!(p[2 * i + 1], (i as f64 + 1.0, *y));
            }
            // No sloped segment: consecutive points share an x or a y.
            for w in p.windows(2) {
                proptest::prop_assert!(w[0].0 == w[1].0 || w[0].1 == w[1].1);
            }
        }

        /// The spectrum of any histogram runs from its minimum to its
        /// maximum without falling, left to right.
        #[test]
        fn spectrum_is_monotonic_from_min_to_max(
            v in proptest::collection::vec(1u64..10_000_000, 1..300)
        ) {
            let mut h = crate::report::new_histogram();
            for x in &v {
                h.record(*x).unwrap();
            }
            let p = spectrum_points(&h);
            proptest::prop_assert!(p.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
            let max_ms = h.highest_equivalent(h.max()) as f64 / 1000.0;
            proptest::prop_assert!((p[p.len() - 1].1 - max_ms).abs() < 1e-9);
            let min_ms = h.highest_equivalent(h.min()) as f64 / 1000.0;
            proptest::prop_assert!((p[0].1 - min_ms).abs() < 1e-9);
            proptest::prop_assert!(p.iter().all(|q| q.0 >= 1.0 && q.0 <= MAX_NINES_X));
        }
    }
}
