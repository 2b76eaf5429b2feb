/* Lean metric values for one worker (metrics/lean.py) in C: the same attributes and methods as
 * lean.py's Python classes, each update one C call instead of a Python frame. The Python classes
 * are their twins (PARLEY_NATIVE=0, or a build without a compiler, uses them; tests compare).
 *
 * Counter(created) .inc(amount=1) .value .created
 * Gauge() .inc(amount=1) .dec(amount=1) .set(value) .value
 * Histogram(bounds, created) .observe(amount) .bounds .counts (a new list) .sum .created
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <structmember.h> /* T_DOUBLE */
typedef struct {
    PyObject_HEAD
    double value;
    double created;
} Counter;

static int amount_of(PyObject *const *args, Py_ssize_t nargs, double *out) {
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "one amount at most");
        return -1;
    }
    if (nargs == 0) {
        *out = 1.0;
        return 0;
    }
    *out = PyFloat_AsDouble(args[0]);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *Counter_inc(Counter *self, PyObject *const *args, Py_ssize_t nargs) {
    double amount;
    if (amount_of(args, nargs, &amount) < 0)
        return NULL;
    self->value += amount;
    Py_RETURN_NONE;
}

static PyObject *Counter_dec(Counter *self, PyObject *const *args, Py_ssize_t nargs) {
    double amount;
    if (amount_of(args, nargs, &amount) < 0)
        return NULL;
    self->value -= amount;
    Py_RETURN_NONE;
}

static PyObject *Counter_set(Counter *self, PyObject *value) {
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred())
        return NULL;
    self->value = v;
    Py_RETURN_NONE;
}

static int Counter_init(Counter *self, PyObject *args, PyObject *kwds) {
    self->value = 0.0;
    self->created = 0.0;
    return PyArg_ParseTuple(args, "|d", &self->created) ? 0 : -1;
}

static PyMemberDef Counter_members[] = {
    {"value", T_DOUBLE, offsetof(Counter, value), 0, "the value"},
    {"created", T_DOUBLE, offsetof(Counter, created), 0, "when it was made (Unix time)"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef Counter_methods[] = {
    {"inc", (PyCFunction)(void (*)(void))Counter_inc, METH_FASTCALL, "add amount (default 1)"},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef Gauge_methods[] = {
    {"inc", (PyCFunction)(void (*)(void))Counter_inc, METH_FASTCALL, "add amount (default 1)"},
    {"dec", (PyCFunction)(void (*)(void))Counter_dec, METH_FASTCALL, "subtract amount (default 1)"},
    {"set", (PyCFunction)Counter_set, METH_O, "set the value"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "parley.filters.metrics._lean.Counter",
    .tp_basicsize = sizeof(Counter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A counter's value.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Counter_init,
    .tp_members = Counter_members,
    .tp_methods = Counter_methods,
};

static PyTypeObject GaugeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "parley.filters.metrics._lean.Gauge",
    .tp_basicsize = sizeof(Counter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A gauge's value.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Counter_init,
    .tp_members = Counter_members,
    .tp_methods = Gauge_methods,
};

typedef struct {
    PyObject_HEAD
    PyObject *bounds; /* tuple of floats, ending with +Inf */
    double *upper;    /* the same bounds as doubles */
    unsigned long long *counts; /* per bucket, not cumulative */
    Py_ssize_t n;
    double sum;
    double created;
} Histogram;

static int Histogram_init(Histogram *self, PyObject *args, PyObject *kwds) {
    PyObject *bounds;
    double created = 0.0;
    if (!PyArg_ParseTuple(args, "O!|d", &PyTuple_Type, &bounds, &created))
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(bounds);
    double *upper = PyMem_Calloc((size_t)(n ? n : 1), sizeof(double));
    unsigned long long *counts = PyMem_Calloc((size_t)(n ? n : 1), sizeof(unsigned long long));
    if (upper == NULL || counts == NULL) {
        PyMem_Free(upper);
        PyMem_Free(counts);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        upper[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i));
        if (upper[i] == -1.0 && PyErr_Occurred()) {
            PyMem_Free(upper);
            PyMem_Free(counts);
            return -1;
        }
    }
    if (n == 0 || !isinf(upper[n - 1])) {
        PyMem_Free(upper);
        PyMem_Free(counts);
        PyErr_SetString(PyExc_ValueError, "bounds end with +Inf");
        return -1;
    }
    PyMem_Free(self->upper);
    PyMem_Free(self->counts);
    Py_INCREF(bounds);
    Py_XSETREF(self->bounds, bounds);
    self->upper = upper;
    self->counts = counts;
    self->n = n;
    self->sum = 0.0;
    self->created = created;
    return 0;
}

static void Histogram_dealloc(Histogram *self) {
    Py_XDECREF(self->bounds);
    PyMem_Free(self->upper);
    PyMem_Free(self->counts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The first bound >= amount (`le`), as bisect.bisect_left finds it (NaN: the first). */
static PyObject *Histogram_observe(Histogram *self, PyObject *value) {
    double amount = PyFloat_AsDouble(value);
    if (amount == -1.0 && PyErr_Occurred())
        return NULL;
    Py_ssize_t lo = 0, hi = self->n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (self->upper[mid] < amount)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < self->n)
        self->counts[lo]++;
    self->sum += amount;
    Py_RETURN_NONE;
}

static PyObject *Histogram_counts(Histogram *self, void *closure) {
    PyObject *out = PyList_New(self->n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->n; i++) {
        PyObject *count = PyLong_FromUnsignedLongLong(self->counts[i]);
        if (count == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, count);
    }
    return out;
}

static PyObject *Histogram_bounds(Histogram *self, void *closure) {
    PyObject *bounds = self->bounds != NULL ? self->bounds : Py_None;
    Py_INCREF(bounds);
    return bounds;
}

static PyGetSetDef Histogram_getset[] = {
    {"counts", (getter)Histogram_counts, NULL, "per bucket, not cumulative (a copy)", NULL},
    {"bounds", (getter)Histogram_bounds, NULL, "the buckets' upper bounds, ending with +Inf", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Histogram_members[] = {
    {"sum", T_DOUBLE, offsetof(Histogram, sum), 0, "the sum of what was observed"},
    {"created", T_DOUBLE, offsetof(Histogram, created), 0, "when it was made (Unix time)"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef Histogram_methods[] = {
    {"observe", (PyCFunction)Histogram_observe, METH_O, "count amount in its bucket"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HistogramType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "parley.filters.metrics._lean.Histogram",
    .tp_basicsize = sizeof(Histogram),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A histogram's buckets and sum.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Histogram_init,
    .tp_dealloc = (destructor)Histogram_dealloc,
    .tp_getset = Histogram_getset,
    .tp_members = Histogram_members,
    .tp_methods = Histogram_methods,
};


static struct PyModuleDef lean_module = {
    PyModuleDef_HEAD_INIT, "parley.filters.metrics._lean",
    "Lean metric values for one worker in C (see lean.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__lean(void) {
    PyObject *m = PyModule_Create(&lean_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddType(m, &CounterType) < 0 || PyModule_AddType(m, &GaugeType) < 0
        || PyModule_AddType(m, &HistogramType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
