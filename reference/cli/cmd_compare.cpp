// `dsr1 compare REFERENCE CANDIDATE`: names the first stage where a candidate's tensors leave
// the reference's (reference/tools/compare.hpp; docs/validating.md).
#include <fmt/format.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "reference/cli/command.hpp"
#include "reference/tools/compare.hpp"

namespace dsr1::cli {
namespace {

struct CompareArgs {
  std::string reference, candidate, preset;
  std::optional<double> rtol, atol;
  std::vector<std::string> names;
  bool all = false, json = false;
};

int run_compare(const CompareArgs& a) {
  compare::Options opt;
  if (!a.preset.empty() || a.rtol || a.atol) {
    compare::Tolerance t = a.preset.empty() ? compare::Tolerance{0, 0, "custom"} : compare::preset_tolerance(a.preset);
    if (a.rtol) t.rtol = *a.rtol;
    if (a.atol) t.atol = *a.atol;
    if (a.rtol || a.atol) t.name = "custom";
    if (t.rtol < 0 || t.atol < 0) throw std::invalid_argument("--rtol and --atol must be non-negative");
    opt.tolerance = t;
  }
  for (const auto& n : a.names) {
    std::size_t start = 0;
    while (start <= n.size()) {
      const std::size_t comma = n.find(',', start);
      const std::string g = n.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!g.empty()) opt.names.push_back(g);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  opt.all = a.all;
  const compare::TensorSet ref = compare::TensorSet::open(a.reference);
  const compare::TensorSet cand = compare::TensorSet::open(a.candidate);
  const compare::Report rep = compare::compare(ref, cand, opt);
  if (a.json) fmt::print("{}\n", compare::to_json(rep).dump(2));
  else fmt::print("{}", compare::format_text(rep));
  if (!opt.names.empty() && rep.results.empty())
    fmt::print(stderr, "dsr1 compare: --names {} matched no tensor of {}\n", fmt::join(opt.names, ","), a.reference);
  return rep.passed() ? 0 : 1;
}

const Register reg{Command{
    "compare",
    "Compare a candidate's tensors with a reference (golden set, .safetensors, .npy, .npz) and name the first "
    "divergent stage",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<CompareArgs>();
      sub.add_option("REFERENCE", a->reference,
                     "golden-set directory, .safetensors, .npy, .npz or a directory of .npy files")
          ->required();
      sub.add_option("CANDIDATE", a->candidate, "the implementation under test, in any of the same formats")
          ->required();
      sub.add_option("--preset", a->preset,
                     "tolerance preset: f64, f32, f16, bf16 or fp8 (default: chosen from each candidate tensor's "
                     "dtype)")
          ->check(CLI::IsMember(compare::preset_names()));
      sub.add_option("--rtol", a->rtol, "relative tolerance: |c - r| <= atol + rtol |r| (overrides the preset)");
      sub.add_option("--atol", a->atol, "absolute tolerance (overrides the preset)");
      sub.add_option("--names", a->names, "compare only names matching these globs (comma-separated or repeated)");
      sub.add_flag("--all", a->all, "continue past the first divergent stage (it stays highlighted)");
      sub.add_flag("--json", a->json, "print the report as JSON");
      return [a] { return run_compare(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
