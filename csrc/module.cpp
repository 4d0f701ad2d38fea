// causal_conv1d_kernels._C: an empty Python module. Importing it loads this
// shared library, whose static TORCH_LIBRARY blocks register the ops.
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
