//! SVG plot of a report: one panel per client group, outcomes per second of
//! intended start (accepted, refused, timed out, closed, other).

use crate::report::{Report, OUTCOMES};
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

const COLOURS: [RGBColor; 5] = [
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x75, 0x70, 0xb3),
    RGBColor(0xe7, 0x29, 0x8a),
    RGBColor(0x66, 0x66, 0x66),
];

/// Writes the plot of `report` to `path` (SVG).
pub fn write_svg(report: &Report, path: &Path) -> Result<()> {
    let n = report.groups.len().max(1);
    let height = u32::try_from(260 * n + 40).unwrap_or(4000);
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let root = root
        .titled(
            &format!("gate-load: {} against {}", report.scenario, report.target),
            ("sans-serif", 18),
        )
        .map_err(|e| anyhow!("plot: {e}"))?;
    let panels = root.split_evenly((n, 1));
    for (g, area) in report.groups.iter().zip(panels.iter()) {
        let secs = g.per_second.len().max(1);
        let ymax = g
            .per_second
            .iter()
            .flat_map(|b| b.iter().copied())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(format!("group {}", g.name), ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0u64..secs as u64, 0u64..(ymax + ymax / 10 + 1))
            .map_err(|e| anyhow!("plot: {e}"))?;
        chart
            .configure_mesh()
            .x_desc("second of intended start")
            .y_desc("attempts per second")
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        for (o, colour) in OUTCOMES.iter().zip(COLOURS.iter()) {
            let idx = o.index();
            if g.per_second.iter().all(|b| b[idx] == 0) {
                continue;
            }
            let pts: Vec<(u64, u64)> = g
                .per_second
                .iter()
                .enumerate()
                .map(|(i, b)| (i as u64, b[idx]))
                .collect();
            let c = *colour;
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(|e| anyhow!("plot: {e}"))?
                .label(o.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
    }
    root.present().map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}
