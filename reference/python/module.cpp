// The Python module `dsr1` (its native part, dsr1._dsr1): the model, the comparator, golden sets
// and the weight generator of the C++ library, with numpy arrays in and out. The Python package
// around it (reference/python/dsr1/) adds the argument checks, the report classes and the
// PyTorch capture helper; docs/validating.md shows the workflow.
// Leaves out: any computation of its own. Every number comes from the library below.
//
// Memory: a tensor the library computed (logits, traced tensors) is handed to numpy without a
// copy: its buffer moves into a capsule that numpy's array keeps alive. The GIL is released
// while the library works; between two decoder layers and before each read of weights the run
// takes it back for a moment to let Python handle a pending signal, so Ctrl-C stops a long run
// within a fraction of a second.
#include <Python.h>
#include <fmt/format.h>
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "reference/cli/model_source.hpp"
#include "reference/cli/progress.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/io/generator.hpp"
#include "reference/python/run.hpp"
#include "reference/text/tokenizer.hpp"
#include "reference/tools/compare.hpp"
#include "reference/tools/model_info.hpp"

namespace py = pybind11;

namespace dsr1::python {
namespace {

// Thrown from inside a run when Python has an exception pending (KeyboardInterrupt): the
// exception stays set in the interpreter and is raised once the run has unwound.
struct PythonErrorPending {};

// A numpy array over a buffer it takes ownership of: no copy.
template <typename T>
py::array owned_array(std::vector<T>&& data, std::vector<py::ssize_t> shape) {
  auto* heap = new std::vector<T>(std::move(data));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, heap->data(), owner);
}

// An Armadillo matrix [rows, cols] (column-major) seen as the row-major [cols, rows] it is on
// disk (one token per row): the matrix moves into the capsule, no copy.
template <typename M>
py::array matrix_as_rows(M&& m) {
  using T = typename std::decay_t<M>::elem_type;
  auto* heap = new std::decay_t<M>(std::move(m));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::decay_t<M>*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(heap->n_cols), static_cast<py::ssize_t>(heap->n_rows)},
                        heap->memptr(), owner);
}

std::vector<py::ssize_t> to_ssize(const std::vector<std::uint64_t>& s) {
  return std::vector<py::ssize_t>(s.begin(), s.end());
}

cli::ModelSource make_source(const std::string& preset, const std::string& model, const std::string& config,
                             std::uint64_t seed) {
  const int given = !preset.empty() + !model.empty() + !config.empty();
  if (given != 1)
    throw std::invalid_argument("Model: give exactly one of preset=NAME, model=DIR or config=FILE");
  cli::ModelSource s;
  s.preset_name = preset;
  s.model_dir = model;
  s.config_path = config;
  s.seed = seed;
  return s;
}

// Model(...).run(...): see dsr1/__init__.py for the documented signature.
py::dict run(const cli::ModelSource& source, const std::vector<std::int64_t>& tokens,
             const std::vector<std::string>& trace, bool fast, const std::string& attn, std::int64_t decode_from,
             bool mtp, int threads, bool progress) {
  RunRequest req;
  req.tokens = tokens;
  req.trace = trace;
  req.fast = fast;
  req.attn = attn;
  req.decode_from = decode_from;
  req.mtp = mtp;
  req.threads = threads;
  req.progress = progress;
  req.check_interrupt = [] {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw PythonErrorPending{};
  };
  RunResult r;
  {
    py::gil_scoped_release nogil;
    try {
      r = run_model(source, req);
    } catch (const PythonErrorPending&) {
      py::gil_scoped_acquire gil;
      throw py::error_already_set();
    } catch (const DoesNotFit& e) {
      py::gil_scoped_acquire gil;
      PyErr_SetString(PyExc_MemoryError, e.what());
      throw py::error_already_set();
    } catch (const std::out_of_range& e) {  // token ids and positions past the model's range
      throw std::invalid_argument(e.what());
    }
  }
  py::dict out;
  out["logits"] = r.fast ? matrix_as_rows(std::move(r.logits_f)) : matrix_as_rows(std::move(r.logits));
  if (mtp) out["mtp_logits"] = matrix_as_rows(std::move(r.mtp_logits));
  py::list names;
  py::dict tensors;
  for (auto& e : r.tensors) {
    const auto shape = to_ssize(e.shape);
    if (r.fast) {
      // The fast path computes in float32; its values are float32 numbers held in doubles.
      std::vector<float> f(e.data.begin(), e.data.end());
      tensors[py::str(e.name)] = owned_array(std::move(f), shape);
    } else {
      tensors[py::str(e.name)] = owned_array(std::move(e.data), shape);
    }
    names.append(e.name);
  }
  out["tensors"] = tensors;  // a dict keeps insertion order: computation order
  out["seconds"] = r.seconds;
  out["peak_rss_bytes"] = cli::peak_rss_bytes();
  return out;
}

// An array argument as C-contiguous float64 (pybind11 converts, and copies only when it must).
using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
using Items = std::vector<std::tuple<std::string, DoubleArray, std::string>>;

// One tensor set for the comparator: a path (golden set, .safetensors, .npy, .npz, directory of
// .npy) or in-memory entries (name, float64 array, dtype label) ordered by the forward pass.
compare::TensorSet entries_set(const std::string& description,
                               const Items& items,
                               const std::string& config_path) {
  std::vector<compare::TensorSet::Entry> entries;
  for (const auto& [name, arr, dtype] : items) {
    compare::TensorSet::Entry e;
    e.name = name;
    for (py::ssize_t k = 0; k < arr.ndim(); ++k) e.shape.push_back(static_cast<std::uint64_t>(arr.shape(k)));
    const double* p = arr.data();
    e.data.assign(p, p + arr.size());
    e.dtype = dtype;
    entries.push_back(std::move(e));
  }
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return compare::computation_rank(a.name) < compare::computation_rank(b.name);
  });
  std::optional<Config> cfg;
  if (!config_path.empty()) cfg = load_config_json(config_path);
  return compare::TensorSet::from_entries(description, std::move(entries), std::move(cfg));
}

// A set's tensors as numpy arrays, in its order: [(name, array, dtype as stored)].
py::list read_set(const std::string& path) {
  const compare::TensorSet s = compare::TensorSet::open(path);
  py::list out;
  for (const auto& t : s.tensors()) {
    std::vector<double> v;
    {
      py::gil_scoped_release nogil;
      v = s.read(t.name);
    }
    out.append(py::make_tuple(t.name, owned_array(std::move(v), to_ssize(t.shape)), t.dtype));
  }
  return out;
}

}  // namespace
}  // namespace dsr1::python

PYBIND11_MODULE(_dsr1, m) {
  using namespace dsr1;
  using namespace dsr1::python;
  m.doc() = "Native part of the dsr1 package (import dsr1, not this module).";

  py::class_<cli::ModelSource>(m, "ModelSource")
      .def(py::init(&make_source), py::arg("preset"), py::arg("model"), py::arg("config"), py::arg("seed"))
      .def("describe", &cli::ModelSource::describe)
      .def("config_json", [](const cli::ModelSource& s) { return config_to_json_text(s.config()); })
      .def("config_name", [](const cli::ModelSource& s) { return s.config().name; })
      .def("info_json", [](const cli::ModelSource& s) { return model_info_json(s.config(), s.model_dir).dump(); })
      .def("fast_weights", [](const cli::ModelSource& s) { return fast_weight_name(s, s.config()); });

  m.def("run", &run, py::arg("source"), py::arg("tokens"), py::arg("trace"), py::arg("fast"), py::arg("attn"),
        py::arg("decode_from"), py::arg("mtp"), py::arg("threads"), py::arg("progress"));
  m.def("stderr_is_terminal", &cli::ProgressLine::stderr_is_terminal);

  m.def("read_set", &read_set, py::arg("path"));
  m.def(
      "compare",
      [](const std::string& ref_path, const std::string& ref_desc,
         const Items& ref_items,
         const std::string& cand_path, const std::string& cand_desc,
         const Items& cand_items,
         const std::string& config_path, const std::string& preset, const std::vector<std::string>& names,
         bool all) {
        compare::Options opt;
        if (!preset.empty()) opt.tolerance = compare::preset_tolerance(preset);
        opt.names = names;
        opt.all = all;
        const compare::TensorSet ref =
            ref_path.empty() ? entries_set(ref_desc, ref_items, config_path) : compare::TensorSet::open(ref_path);
        const compare::TensorSet cand =
            cand_path.empty() ? entries_set(cand_desc, cand_items, config_path) : compare::TensorSet::open(cand_path);
        compare::Report rep;
        {
          py::gil_scoped_release nogil;
          rep = compare::compare(ref, cand, opt);
        }
        return py::make_tuple(compare::format_text(rep), compare::to_json(rep).dump());
      },
      py::arg("ref_path"), py::arg("ref_desc"), py::arg("ref_items"), py::arg("cand_path"), py::arg("cand_desc"),
      py::arg("cand_items"), py::arg("config_path"), py::arg("preset"), py::arg("names"), py::arg("all"));
  m.def("tolerance_presets", &compare::preset_names);

  m.def("preset_names", &preset_names);
  m.def("generator_value", &generator_value, py::arg("seed"), py::arg("name"), py::arg("index"), py::arg("last_dim"));
  m.def(
      "generator_tensor",
      [](std::uint64_t seed, const std::string& name, const std::vector<std::uint64_t>& shape) {
        std::uint64_t n = 1;
        for (auto d : shape) n *= d;
        const std::uint64_t last = shape.empty() ? 1 : shape.back();
        std::vector<float> out(n);
        {
          py::gil_scoped_release nogil;
          // Every generator value is a float32 number; generated in blocks through doubles.
          constexpr std::uint64_t kBlock = std::uint64_t{1} << 20;
          std::vector<double> buf(std::min(n, kBlock));
          for (std::uint64_t first = 0; first < n; first += kBlock) {
            const std::uint64_t count = std::min(kBlock, n - first);
            generator_fill(seed, name, last, first, count, buf.data());
            std::copy(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(count), out.begin() + static_cast<std::ptrdiff_t>(first));
          }
        }
        return owned_array(std::move(out), to_ssize(shape));
      },
      py::arg("seed"), py::arg("name"), py::arg("shape"));
  m.def(
      "catalogue",
      [](const std::string& preset_name) {
        py::dict out;
        for (const auto& e : checkpoint_catalogue(preset(preset_name))) out[py::str(e.name)] = e.shape;
        return out;
      },
      py::arg("preset"));
  // The tokenizer (reference/text/tokenizer.hpp). Text is UTF-8; decode gives text with invalid
  // UTF-8 (ids that end inside a character) replaced by U+FFFD, as HF's decode does.
  py::class_<text::Tokenizer>(m, "Tokenizer")
      .def_static("from_file", [](const std::string& path) {
        py::gil_scoped_release nogil;
        return text::Tokenizer::from_file(path);
      })
      .def("encode", [](const text::Tokenizer& t, const std::string& s) {
        py::gil_scoped_release nogil;
        return t.encode(s);
      })
      .def("pre_tokenize", &text::Tokenizer::pre_tokenize)
      .def("decode", [](const text::Tokenizer& t, const std::vector<std::int64_t>& ids) {
        std::string bytes;
        try {
          bytes = t.decode(ids);
        } catch (const std::out_of_range& e) {
          throw std::invalid_argument(e.what());
        }
        PyObject* u = PyUnicode_DecodeUTF8(bytes.data(), static_cast<Py_ssize_t>(bytes.size()), "replace");
        if (!u) throw py::error_already_set();
        return py::reinterpret_steal<py::str>(u);
      })
      .def("token_bytes", [](const text::Tokenizer& t, std::int64_t id) {
        try {
          return py::bytes(t.token_bytes(id));
        } catch (const std::out_of_range& e) {
          throw std::invalid_argument(e.what());
        }
      })
      .def("vocab_size", &text::Tokenizer::vocab_size)
      .def("id_of", [](const text::Tokenizer& t, const std::string& token) { return t.id_of(token); })
      .def("is_special", &text::Tokenizer::is_special)
      .def("origin", &text::Tokenizer::origin);
  m.def("default_tokenizer_path", &text::default_tokenizer_path);

  m.attr("__version__") = DSR1_VERSION;
}
