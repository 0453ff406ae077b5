/* One Python call per `Dataset.read`, and one pass over the file's bytes: the C ABI's
 * `sheaf_read_alloc` looks the path up with the GIL released, then asks for memory of the
 * file's length; that memory is a new bytes object, which the library fills, copying and
 * checking the bytes in one pass. Through ctypes the same read takes three foreign calls and
 * copies the bytes after they were checked.
 *
 * The GIL: released for the lookup (which may wait on a remote store), taken back to make the
 * bytes object, and released again while a file of RELEASE_GIL_FROM bytes or more is copied,
 * so other threads run meanwhile; a shorter file is copied with the GIL held, since releasing
 * and taking it back would cost more than the copy.
 *
 * The C ABI is not linked here: `bind` receives the address of `sheaf_read_alloc` from the
 * library ctypes already loaded, so there is one copy of it. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "sheaf.h"

#define RELEASE_GIL_FROM (16 * 1024)

typedef sheaf_status (*read_alloc_fn)(const sheaf_dataset *, const uint8_t *, size_t,
                                      sheaf_alloc_fn, void *, size_t *);

static read_alloc_fn sheaf_read_alloc_at;
/* Called with a failed status; raises the matching Python exception. */
static PyObject *raise_status;

static PyObject *bind(PyObject *module, PyObject *args) {
    unsigned long long read_address;
    PyObject *raiser;
    (void)module;
    if (!PyArg_ParseTuple(args, "KO", &read_address, &raiser)) {
        return NULL;
    }
    if (!read_address || !PyCallable_Check(raiser)) {
        PyErr_SetString(PyExc_ValueError, "bind needs a function address and a callable");
        return NULL;
    }
    Py_INCREF(raiser);
    Py_XSETREF(raise_status, raiser);
    sheaf_read_alloc_at = (read_alloc_fn)(uintptr_t)read_address;
    Py_RETURN_NONE;
}

/* One read in progress: the bytes object it fills, the thread state while the GIL is
 * released, and whether the read stopped because the interpreter is shutting down. */
struct placing {
    PyThreadState *released;
    PyObject *bytes;
    int finalizing;
};

static int interpreter_finalizing(void) {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

/* The library's `alloc`: called once, on the reading thread, with the GIL released. */
static uint8_t *place_in_bytes(void *context, size_t len) {
    struct placing *placing = context;
    /* Taking the GIL while the interpreter shuts down may end this thread on the spot, which
     * must not happen inside the library's (Rust) frames: the read fails instead, and the GIL
     * is taken back once the library has returned. */
    if (interpreter_finalizing()) {
        placing->finalizing = 1;
        return NULL;
    }
    PyEval_RestoreThread(placing->released);
    placing->released = NULL;
    if (len > (size_t)PY_SSIZE_T_MAX) {
        PyErr_NoMemory();
        return NULL;
    }
    placing->bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!placing->bytes) {
        return NULL;
    }
    uint8_t *at = (uint8_t *)PyBytes_AS_STRING(placing->bytes);
    if (len >= RELEASE_GIL_FROM) {
        placing->released = PyEval_SaveThread();
    }
    return at;
}

/* read(handle: int, path: bytes) -> bytes */
static PyObject *read_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (!sheaf_read_alloc_at) {
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
    struct placing placing = {NULL, NULL, 0};
    size_t len = 0;
    placing.released = PyEval_SaveThread();
    sheaf_status status = sheaf_read_alloc_at((const sheaf_dataset *)handle, path, path_len,
                                              place_in_bytes, &placing, &len);
    if (placing.released) {
        PyEval_RestoreThread(placing.released);
    }
    if (placing.finalizing) {
        /* Checked first: an empty file's read succeeds without memory. */
        Py_XDECREF(placing.bytes);
        PyErr_SetString(PyExc_RuntimeError, "sheaf: read stopped, the interpreter is shutting down");
        return NULL;
    }
    if (status == SHEAF_OK) {
        return placing.bytes;
    }
    Py_XDECREF(placing.bytes);
    if (PyErr_Occurred()) {
        /* The bytes object could not be made (MemoryError). */
        return NULL;
    }
    /* The library's message is per thread, and this is still the thread that failed. */
    PyObject *none = PyObject_CallFunction(raise_status, "i", (int)status);
    Py_XDECREF(none);
    if (!PyErr_Occurred()) {
        PyErr_Format(PyExc_RuntimeError, "sheaf_read_alloc failed with status %d", (int)status);
    }
    return NULL;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(read_alloc_address, raise_status): the C ABI function to call, and how to raise."},
    {"read", (PyCFunction)(void (*)(void))read_whole, METH_FASTCALL,
     "read(handle, path) -> bytes: the whole file, checked against its checksum."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sheaf._fastread", "One native call per Dataset.read.", -1, methods,
};

PyMODINIT_FUNC PyInit__fastread(void) { return PyModule_Create(&module); }
