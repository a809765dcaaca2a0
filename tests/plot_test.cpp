#include <gtest/gtest.h>

#include <cairo.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tools/plot.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

fs::path make_run(const std::string& name, double scale) {
    const fs::path dir = fs::temp_directory_path() / "agpt_plot_test" / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream out(dir / "metrics.jsonl");
    for (int step = 1; step <= 50; step++) {
        out << "{\"step\": " << step << ", \"loss\": " << scale * (3.0 / std::sqrt(step)) << "}\n";
        if (step % 10 == 0) out << "{\"step\": " << step << ", \"val_loss\": 2.5}\n";
    }
    out << "{\"step\": 51, \"loss\": 1.";  // a line cut short by a kill
    return dir;
}

TEST(Plot, ReadsOneMetricSkippingPartialLines) {
    const fs::path run = make_run("read", 1.0);
    const Series s = read_metric(run.string(), "loss");
    ASSERT_EQ(s.x.size(), 50u);
    EXPECT_EQ(s.x.front(), 1.0);
    EXPECT_DOUBLE_EQ(s.y.front(), 3.0);
    EXPECT_EQ(s.label, "read");
    EXPECT_EQ(read_metric(run.string(), "val_loss").x.size(), 5u);
    try {
        read_metric(run.string(), "perplexity");
        FAIL();
    } catch (const Error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("perplexity"), std::string::npos) << m;
        EXPECT_NE(m.find("val_loss"), std::string::npos) << m;  // lists what it has
    }
}

TEST(Plot, EmaSmoothingIsBiasCorrected) {
    const auto s = ema_smooth({2.0, 4.0, 4.0}, 0.5);
    EXPECT_DOUBLE_EQ(s[0], 2.0);                          // first value unbiased
    EXPECT_DOUBLE_EQ(s[1], (0.25 * 2 + 0.5 * 4) / 0.75);  // (0.5·0.5·2 + 0.5·4) / 0.75
    EXPECT_DOUBLE_EQ(s[2], (0.125 * 2 + 0.25 * 4 + 0.5 * 4) / 0.875);
    EXPECT_EQ(ema_smooth({1.0, 5.0}, 0.0), (std::vector<double>{1.0, 5.0}));
}

TEST(Plot, PngHasTheCurvesColoursAndSvgIsVector) {
    const fs::path a = make_run("run_a", 1.0), b = make_run("run_b", 0.8);
    const fs::path png = fs::temp_directory_path() / "agpt_plot_test" / "loss.png";
    PlotOptions opt;
    opt.out = png.string();
    opt.smooth = 0.6;
    opt.log_x = true;
    plot_runs({a.string(), b.string()}, opt);
    cairo_surface_t* img = cairo_image_surface_create_from_png(png.c_str());
    ASSERT_EQ(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
    EXPECT_EQ(cairo_image_surface_get_width(img), opt.width);
    EXPECT_EQ(cairo_image_surface_get_height(img), opt.height);
    // Count pixels close to the first two palette colours (blue, orange).
    const unsigned char* data = cairo_image_surface_get_data(img);
    const int stride = cairo_image_surface_get_stride(img);
    int blue = 0, orange = 0;
    for (int y = 0; y < opt.height; y++)
        for (int x = 0; x < opt.width; x++) {
            const unsigned char* p = data + y * stride + 4 * x;  // B, G, R, A
            if (std::abs(p[0] - 181) < 30 && std::abs(p[1] - 120) < 30 && std::abs(p[2] - 31) < 30)
                blue++;
            if (std::abs(p[0] - 13) < 30 && std::abs(p[1] - 128) < 30 && std::abs(p[2] - 255) < 30)
                orange++;
        }
    cairo_surface_destroy(img);
    EXPECT_GT(blue, 200);  // a curve spanning the plot plus its legend swatch
    EXPECT_GT(orange, 200);

    const fs::path svg = png.parent_path() / "loss.svg";
    opt.out = svg.string();
    plot_runs({a.string()}, opt);
    std::ifstream in(svg);
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_NE(ss.str().find("<svg"), std::string::npos);
    EXPECT_NE(ss.str().find("<path"), std::string::npos);
}

TEST(Plot, RefusesBadOptions) {
    const fs::path a = make_run("bad", 1.0);
    PlotOptions opt;
    opt.out = (a / "x.jpg").string();
    EXPECT_THROW(plot_runs({a.string()}, opt), Error);
    opt.out = (a / "x.png").string();
    opt.smooth = 1.0;
    EXPECT_THROW(plot_runs({a.string()}, opt), Error);
    opt.smooth = 0;
    EXPECT_THROW(plot_runs({(a / "nonexistent").string()}, opt), Error);
    EXPECT_FALSE(fs::exists(a / "x.png"));
}

}  // namespace
}  // namespace agpt
