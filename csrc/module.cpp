// causal_conv1d_kernels._C: an empty Python module. Importing it loads this
// shared library, whose static TORCH_LIBRARY blocks register the ops. A
// stable-ABI build uses only Python's limited API too (_C.abi3.so): one build
// serves every CPython from 3.9 on as well as every torch from 2.11 on.
#ifdef CAUSAL_CONV1D_STABLE_ABI
// torch's BuildExtension passes 3.10's; this module needs only 3.9's (the wheel's cp39 tag).
#undef Py_LIMITED_API
#define Py_LIMITED_API 0x03090000
#endif
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
