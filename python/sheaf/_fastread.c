/* One Python call per `Dataset.read`: the C ABI's `sheaf_read` with the GIL released, the
 * bytes object made from the result, the library's bytes released. Through ctypes the same read
 * takes three foreign calls, which cost more than a small file's lookup and checksum.
 *
 * The C ABI is not linked here: `bind` receives the addresses of `sheaf_read` and
 * `sheaf_bytes_free` from the library ctypes already loaded, so there is one copy of it. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "sheaf.h"

typedef sheaf_status (*read_fn)(const sheaf_dataset *, const uint8_t *, size_t, sheaf_bytes *);
typedef void (*free_fn)(sheaf_bytes *);

static read_fn sheaf_read_at;
static free_fn sheaf_bytes_free_at;
/* Called with a failed status; raises the matching Python exception. */
static PyObject *raise_status;

static PyObject *bind(PyObject *module, PyObject *args) {
    unsigned long long read_address, free_address;
    PyObject *raiser;
    (void)module;
    if (!PyArg_ParseTuple(args, "KKO", &read_address, &free_address, &raiser)) {
        return NULL;
    }
    if (!read_address || !free_address || !PyCallable_Check(raiser)) {
        PyErr_SetString(PyExc_ValueError, "bind needs two function addresses and a callable");
        return NULL;
    }
    Py_INCREF(raiser);
    Py_XSETREF(raise_status, raiser);
    sheaf_read_at = (read_fn)(uintptr_t)read_address;
    sheaf_bytes_free_at = (free_fn)(uintptr_t)free_address;
    Py_RETURN_NONE;
}

/* read(handle: int, path: bytes) -> bytes */
static PyObject *read_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (!sheaf_read_at) {
        PyErr_SetString(PyExc_RuntimeError, "sheaf._fastread.read called before bind");
        return NULL;
    }
    if (nargs != 2 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "read(handle: int, path: bytes)");
        return NULL;
    }
    void *handle = PyLong_AsVoidPtr(args[0]);
    if (!handle) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "read on a null dataset handle");
        }
        return NULL;
    }
    /* The caller's reference keeps `path` alive while the GIL is released. */
    const uint8_t *path = (const uint8_t *)PyBytes_AS_STRING(args[1]);
    size_t path_len = (size_t)PyBytes_GET_SIZE(args[1]);
    sheaf_bytes out = {0};
    sheaf_status status;
    Py_BEGIN_ALLOW_THREADS
    status = sheaf_read_at((const sheaf_dataset *)handle, path, path_len, &out);
    Py_END_ALLOW_THREADS
    if (status != SHEAF_OK) {
        /* The library's message is per thread, and this is still the thread that failed. */
        PyObject *none = PyObject_CallFunction(raise_status, "i", (int)status);
        Py_XDECREF(none);
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_RuntimeError, "sheaf_read failed with status %d", (int)status);
        }
        return NULL;
    }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
    sheaf_bytes_free_at(&out);
    return bytes;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(read_address, free_address, raise_status): the C ABI functions to call."},
    {"read", (PyCFunction)(void (*)(void))read_whole, METH_FASTCALL,
     "read(handle, path) -> bytes: the whole file, checked against its checksum."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sheaf._fastread", "One native call per Dataset.read.", -1, methods,
};

PyMODINIT_FUNC PyInit__fastread(void) { return PyModule_Create(&module); }
