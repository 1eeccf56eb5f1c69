// Walkthrough of the explainer's §1.1: RMSNorm of one token h = [2, -2, 1, 1].
// Numbers: golden/seed/rmsnorm.json. Formula: reference/deepseek/rmsnorm.hpp (ref::rmsnorm).
#include "reference/deepseek/rmsnorm.hpp"
#include "walkthroughs/walkthrough.hpp"

namespace dsr1::walk {

inline void walk_rmsnorm(Walkthrough& w) {
  const GoldenFile g = w.golden("rmsnorm.json");
  const arma::mat h = g.tokens("inputs.h");             // h: [D=4, T=1]
  const arma::vec gamma = g.vec("parameters.gamma");    // gamma: [D]
  const double eps = g.number("parameters.eps");
  TraceScope scope(w.tr(), "rmsnorm");

  w.section("1.1", "RMSNorm");
  w.say("RMSNorm(h) = ( h / sqrt( (1/D) * sum(h_i^2) + eps ) ) * gamma,  D = 4, eps = 0");
  w.step("the token's hidden state");
  w.show("h", h);

  w.step("mean of the squares");
  double sum_sq = 0.0;
  for (arma::uword i = 0; i < h.n_rows; ++i) sum_sq += h(i, 0) * h(i, 0);
  const double mean_sq = sum_sq / static_cast<double>(h.n_rows);
  w.say("(1/D) * sum(h_i^2) = (1/4) * (4 + 4 + 1 + 1) = 10/4");
  w.show_scalar("mean_sq", mean_sq);

  w.step("root mean square");
  const double rms = std::sqrt(mean_sq + eps);
  w.show_scalar("rms", rms);
  w.say(fmt::format("The document prints sqrt(2.5) = {} (rounded); exactly {}.",
                    g.number("doc_printed.rms"), w.num(rms)));

  w.step("divide by the RMS and multiply by gamma = [1, 1, 1, 1]");
  const arma::mat y = ref::rmsnorm(h, gamma, eps);
  w.show("y", y);
  w.picture([&] {
    return html::norm_chart("RMSNorm of h: before (grey) and after (blue), channel by channel",
                            h.col(0), y.col(0), w.options().precision);
  });
  w.erratum(fmt::format("The document prints [1.27, -1.27, 0.63, 0.63]: it divided by the rounded "
                        "1.58 (2/1.58 = 1.2658). The true value 2/sqrt(2.5) = {} rounds to 1.26; "
                        "0.63 is right.",
                        format_number(y(0, 0), 6)));
}

}  // namespace dsr1::walk

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return dsr1::walk::run(argc, argv, "01_rmsnorm", "Explainer §1.1: RMSNorm of one token, step by step",
                         {dsr1::walk::walk_rmsnorm});
}
#endif
