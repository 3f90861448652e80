import { describe, expect, it } from "vitest";
import { renderMetrics } from "../../gateway/http/metrics.ts";

describe("Prometheus rendering", () => {
  it("groups samples under one HELP/TYPE and escapes label values", () => {
    const text = renderMetrics([
      { name: "x_total", help: "Things.", type: "counter", value: 3, labels: { camera: 'a"b\\c\nd' } },
      { name: "x_total", help: "Things.", type: "counter", value: 4, labels: { camera: "e" } },
      { name: "y", help: "Y.", type: "gauge", value: Number.NaN },
    ]);
    expect(text).toBe(
      [
        "# HELP x_total Things.",
        "# TYPE x_total counter",
        'x_total{camera="a\\"b\\\\c\\nd"} 3',
        'x_total{camera="e"} 4',
        "# HELP y Y.",
        "# TYPE y gauge",
        "y 0",
        "",
      ].join("\n"),
    );
  });
});
