#include "reference/cli/model_source.hpp"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <stdexcept>


namespace dsr1::cli {

void ModelSource::add_options(CLI::App& sub) {
  auto* m = sub.add_option("--model", model_dir, "checkpoint directory (config.json + safetensors)")
                ->check(CLI::ExistingDirectory);
  auto* p = sub.add_option("--preset", preset_name,
                           "built-in config (weights from the generator): " +
                               fmt::format("{}", fmt::join(preset_names(), ", ")));
  auto* c = sub.add_option("--config", config_path, "config.json (weights from the generator)")
                ->check(CLI::ExistingFile);
  sub.add_option("--seed", seed, "generator seed for --preset / --config weights")
      ->capture_default_str();
  m->excludes(p)->excludes(c);
  p->excludes(c);
}

Config ModelSource::config() const {
  Config c;
  if (!model_dir.empty())
    c = load_config_json(model_dir + "/config.json");
  else if (!preset_name.empty())
    c = preset(preset_name);
  else if (!config_path.empty())
    c = load_config_json(config_path);
  else
    throw std::invalid_argument("give the model with --model DIR, --preset NAME or --config FILE");
  validate(c);
  return c;
}

static double physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

// Every parameter the checkpoint holds (the catalogue's tensors; the config's limits bound
// their number, config.hpp).
static double catalogue_params(const Config& c) {
  double params = 0;
  for (const auto& e : checkpoint_catalogue(c)) {
    double n = 1;
    for (auto s : e.shape) n *= static_cast<double>(s);
    params += n;
  }
  return params;
}

LoadedModel ModelSource::load(bool with_mtp) const {
  const Config c = config();
  // The reference holds every weight in double precision: 8 bytes a parameter.
  const double params = catalogue_params(c);
  const double need = 8.0 * params;
  const double have = physical_memory_bytes();
  if (have > 0 && need > 0.75 * have)
    throw std::runtime_error(fmt::format(
        "model '{}' has {:.3g} parameters; the double-precision reference would need {:.1f} GB "
        "of memory but this machine has {:.1f} GB. Use `dsr1 dry-run` to walk it without weights.",
        c.name, params, need / 1e9, have / 1e9));
  if (!model_dir.empty()) return load_model_dir(model_dir, with_mtp);
  LoadedModel m;
  m.config = c;
  m.weights = generate_weights(c, seed);
  if (!with_mtp) m.weights.mtp.reset();
  return m;
}

ModelSource::Opened ModelSource::open(bool with_mtp, std::int64_t T) const {
  Opened m;
  m.config = config();
  const double need = working_set_bytes(m.config, T);
  const double have = physical_memory_bytes();
  if (have > 0 && need > 0.75 * have)
    throw std::runtime_error(fmt::format(
        "model '{}' with {} tokens needs a working set of about {:.1f} GB (one layer's weights in "
        "double, the KV cache, the activations) but this machine has {:.1f} GB. Use `dsr1 "
        "dry-run` to walk it without weights.",
        m.config.name, T, need / 1e9, have / 1e9));
  if (!model_dir.empty()) {
    CheckpointOptions opt;
    opt.weight_block_size = m.config.weight_block_size;
    m.source = std::make_unique<Checkpoint>(model_dir, opt);
  } else {
    m.source = std::unique_ptr<TensorSource>(new GeneratorSource(generator_source(m.config, seed)));
  }
  m.weights = std::make_unique<SourceStore>(m.config, *m.source, with_mtp);
  return m;
}

double peak_rss_bytes() {
  struct rusage u {};
  if (::getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return static_cast<double>(u.ru_maxrss) * 1024.0;  // Linux reports kilobytes
}

std::string ModelSource::describe() const {
  if (!model_dir.empty()) return fmt::format("checkpoint {}", model_dir);
  if (!preset_name.empty()) return fmt::format("preset {} (generator seed {})", preset_name, seed);
  return fmt::format("config {} (generator seed {})", config_path, seed);
}

void RunOptions::add_options(CLI::App& sub) {
  sub.add_option("--attn", attn, "MLA form: naive (per-head K/V) or absorbed (latent only)")
      ->check(CLI::IsMember({"naive", "absorbed"}))
      ->capture_default_str();
  sub.add_option("--rope-layout", rope_layout,
                 "RoPE pair layout: interleaved (official weights) or half-split")
      ->check(CLI::IsMember({"interleaved", "half-split"}))
      ->capture_default_str();
}

ref::ForwardOptions RunOptions::forward_options() const {
  ref::ForwardOptions o;
  o.attn = attn == "absorbed" ? ref::AttnForm::Absorbed : ref::AttnForm::Naive;
  o.rope_layout =
      rope_layout == "half-split" ? ref::RopeLayout::HalfSplit : ref::RopeLayout::Interleaved;
  return o;
}

}  // namespace dsr1::cli
