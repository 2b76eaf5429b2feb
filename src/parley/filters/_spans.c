/* The common case of `trace_record.Trace.write` in C: the OTLP exporter's per-request work (its
 * pure-Python twin is the encoder itself; PARLEY_NATIVE=0, or a build without a compiler, uses it).
 *
 * A request's trace that did not fail, with no captured content, no fallback or guardrail events
 * and at most one attempt (which served the reply) is written here, byte for byte as the Python
 * encoder writes it (tests/test_otlp_native.py compares the two). Everything else, and any value
 * this code does not expect (a wrong type, an unhashable key, a time out of range), goes to the
 * item's own `write(encoder, parts)`, the Python encoder. The encoded attribute runs that repeat
 * from request to request are the Python encoder's `groups` cache: looked up here under the same
 * keys; on a miss the Python encoder writes the request and fills the cache.
 *
 * SpanWriter(trace_type, attempt_type, target_type, operations, default_operation, request_id_key,
 *            ttft_key, usage_keys)
 *   .write(items, encoder, groups, parts) -> None
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h> /* T_OBJECT_EX */

#define SERVER 2
#define CLIENT 3
#define OUTCOME_FIELDS 15
#define HEAD_MAX 58 /* ids, kind and times with a parent span id */

/* A slot of a `__slots__` class, read at its offset (NULL: not set). */
#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

enum { T_OUTCOME, T_ATTEMPTS, T_CONTENT, T_EVENTS, T_PARAMS, T_ROUTE, T_MODEL, T_TRACE_ID, T_SPAN_ID,
       T_PARENT_ID, T_STARTED_AT, T_STARTED, T_REQUEST_ID, TRACE_SLOTS };
enum { A_ERROR, A_TARGET, A_NUMBER, A_STATUS, A_SPAN_ID, A_START, ATTEMPT_SLOTS };
enum { G_DEPLOYMENT, G_UPSTREAM_MODEL, TARGET_SLOTS };

typedef struct {
    PyObject *key;  /* the last key found in the encoder's cache, as a tuple */
    PyObject *blob; /* what the cache held for it */
} Memo;

typedef struct {
    PyObject_HEAD
    PyObject *trace_type;   /* the type whose instances this writes (anything else: its own write) */
    PyObject *attempt_type; /* and the exact types of their attempts and targets */
    PyObject *target_type;
    Py_ssize_t trace_slots[TRACE_SLOTS], attempt_slots[ATTEMPT_SLOTS], target_slots[TARGET_SLOTS];
    Memo server, client; /* most requests repeat the last one's attributes: no tuple, no hash */
    PyObject *operations;   /* dict: route -> gen_ai.operation.name */
    PyObject *default_op;   /* str: the operation of any other route */
    PyObject *request_id_key; /* bytes: the encoded key of parley.request_id */
    PyObject *ttft_key;     /* bytes: the encoded key of gen_ai.response.time_to_first_chunk */
    PyObject *usage_keys[4]; /* bytes: the encoded keys of the four gen_ai.usage.* counts */
} SpanWriter;

static const char *TRACE_NAMES[TRACE_SLOTS] = {
    "outcome", "attempts", "content", "events", "params", "route", "model", "trace_id", "span_id",
    "parent_id", "started_at", "started", "request_id"};
static const char *ATTEMPT_NAMES[ATTEMPT_SLOTS] = {"error", "target", "number", "status", "span_id", "start"};
static const char *TARGET_NAMES[TARGET_SLOTS] = {"deployment", "upstream_model"};

/* attribute names, interned once per module (constants, not state) */
static PyObject *s_id, *s_write;

static int varint_size(uint64_t n) {
    int size = 1;
    while (n > 0x7F) {
        n >>= 7;
        size++;
    }
    return size;
}

static char *put_varint(char *p, uint64_t n) {
    while (n > 0x7F) {
        *p++ = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    *p++ = (char)n;
    return p;
}

static char *put_fixed64(char *p, uint64_t n) {
    for (int i = 0; i < 8; i++) {
        *p++ = (char)(n & 0xFF);
        n >>= 8;
    }
    return p;
}

static char *put_bytes(char *p, const char *data, Py_ssize_t n) {
    memcpy(p, data, (size_t)n);
    return p + n;
}

/* A Span's ids, kind and times (fields 1, 2, 4, 6, 7, 8), as `otlp.span_head` packs them. */
static char *put_head(char *p, const char *trace_id, const char *span_id, const char *parent,
                      int kind, uint64_t start, uint64_t end) {
    *p++ = 0x0A; *p++ = 16; p = put_bytes(p, trace_id, 16);
    *p++ = 0x12; *p++ = 8; p = put_bytes(p, span_id, 8);
    if (parent != NULL) {
        *p++ = 0x22; *p++ = 8; p = put_bytes(p, parent, 8);
    }
    *p++ = 0x30; *p++ = (char)kind;
    *p++ = 0x39; p = put_fixed64(p, start);
    *p++ = 0x41; p = put_fixed64(p, end);
    return p;
}

/* A double-valued Span attribute (field 9): `otlp.float_attribute`. */
static Py_ssize_t float_attr_size(PyObject *key) {
    Py_ssize_t inner = PyBytes_GET_SIZE(key) + 11;
    return 1 + varint_size((uint64_t)inner) + inner;
}

static char *put_float_attr(char *p, PyObject *key, double x) {
    Py_ssize_t inner = PyBytes_GET_SIZE(key) + 11;
    *p++ = 0x4a; p = put_varint(p, (uint64_t)inner);
    p = put_bytes(p, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    *p++ = 0x12; *p++ = 0x09; *p++ = 0x21;
    PyFloat_Pack8(x, p, 1);
    return p + 8;
}

/* An int-valued Span attribute (field 9), the value as a 64-bit varint (negatives two's complement). */
static Py_ssize_t int_attr_size(PyObject *key, uint64_t n) {
    Py_ssize_t value = 1 + varint_size(n);
    Py_ssize_t inner = PyBytes_GET_SIZE(key) + 1 + varint_size((uint64_t)value) + value;
    return 1 + varint_size((uint64_t)inner) + inner;
}

static char *put_int_attr(char *p, PyObject *key, uint64_t n) {
    Py_ssize_t value = 1 + varint_size(n);
    Py_ssize_t inner = PyBytes_GET_SIZE(key) + 1 + varint_size((uint64_t)value) + value;
    *p++ = 0x4a; p = put_varint(p, (uint64_t)inner);
    p = put_bytes(p, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    *p++ = 0x12; p = put_varint(p, (uint64_t)value);
    *p++ = 0x18;
    return put_varint(p, n);
}

/* A perf_counter-based time as wall clock nanoseconds, as Python's int((a + (b - c)) * 1e9);
 * 0 when out of the range a fixed64 holds (the caller falls back). */
static int to_ns(double wall, uint64_t *out) {
    if (!(wall >= 0.0 && wall < 18446744073709551616.0))
        return 0;
    *out = (uint64_t)wall;
    return 1;
}

static int get_double(PyObject *o, double *out) {
    if (o == NULL || !PyFloat_CheckExact(o))
        return 0;
    *out = PyFloat_AS_DOUBLE(o);
    return 1;
}

static int get_i64(PyObject *o, int64_t *out) {
    if (o == NULL || !PyLong_Check(o))
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = (int64_t)v;
    return 1;
}

/* An id of exactly `n` bytes (NULL otherwise). */
static const char *id_of(PyObject *o, Py_ssize_t n) {
    if (o == NULL || !PyBytes_CheckExact(o) || PyBytes_GET_SIZE(o) != n)
        return NULL;
    return PyBytes_AS_STRING(o);
}

/* The offsets of `names` in `type`'s __slots__ (-1 if not all are object slots). */
static int slot_offsets(PyObject *type, const char **names, int n, Py_ssize_t *out) {
    for (int i = 0; i < n; i++) {
        PyObject *d = PyDict_GetItemString(((PyTypeObject *)type)->tp_dict, names[i]);
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)
            || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ attribute",
                         ((PyTypeObject *)type)->tp_name, names[i]);
            return -1;
        }
        out[i] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    return 0;
}

/* Whether the memo holds `values` (compared as a tuple key compares them): then its blob, borrowed. */
static PyObject *recall(Memo *memo, PyObject **values, int n) {
    if (memo->key == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *a = PyTuple_GET_ITEM(memo->key, i);
        if (a == values[i])
            continue;
        int same = PyObject_RichCompareBool(a, values[i], Py_EQ);
        if (same != 1) {
            PyErr_Clear();
            return NULL;
        }
    }
    return memo->blob;
}

/* Look `values` up in the encoder's cache (as one tuple key) and remember what was found: a
 * borrowed reference to the bytes, or NULL (not there, or unhashable: the Python encoder decides). */
static PyObject *lookup(Memo *memo, PyObject *groups, PyObject **values, int n) {
    PyObject *found = recall(memo, values, n);
    if (found != NULL)
        return found;
    PyObject *key = PyTuple_New(n);
    if (key == NULL) {
        PyErr_Clear();
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        Py_INCREF(values[i]);
        PyTuple_SET_ITEM(key, i, values[i]);
    }
    found = PyDict_GetItemWithError(groups, key);
    if (found == NULL || !PyBytes_CheckExact(found) || PyBytes_GET_SIZE(found) == 0) {
        PyErr_Clear();
        Py_DECREF(key);
        return NULL;
    }
    Py_INCREF(found);
    Py_XSETREF(memo->key, key);
    Py_XSETREF(memo->blob, found);
    return found;
}

/* Whether `p` is the end of `span`: the sizes computed before writing and the bytes written agree
 * (else SystemError: a bug here, never a malformed span sent). */
static int filled(PyObject *span, const char *p) {
    if (p == PyBytes_AS_STRING(span) + PyBytes_GET_SIZE(span))
        return 1;
    PyErr_SetString(PyExc_SystemError, "_spans: span size mismatch");
    return 0;
}

/* The params' types, as a tuple (a new reference; NULL on failure). */
static PyObject *types_of(PyObject *params) {
    Py_ssize_t n = PyTuple_GET_SIZE(params);
    PyObject *types = PyTuple_New(n);
    if (types == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = (PyObject *)Py_TYPE(PyTuple_GET_ITEM(params, i));
        Py_INCREF(t);
        PyTuple_SET_ITEM(types, i, t);
    }
    return types;
}

/* The server span's constants: (route, model, status, attempts, deployment id, response model,
 * params, the params' types) as trace_record.Trace._server keys them. Borrowed, or NULL. */
static PyObject *server_constants(SpanWriter *self, PyObject *groups, PyObject **values) {
    PyObject *params = values[6];
    Memo *memo = &self->server;
    PyObject *found = recall(memo, values, 7);
    if (found != NULL) {
        PyObject *types = PyTuple_GET_ITEM(memo->key, 7);
        Py_ssize_t n = PyTuple_GET_SIZE(params);
        int same = PyTuple_GET_SIZE(types) == n;
        for (Py_ssize_t i = 0; same && i < n; i++)
            same = PyTuple_GET_ITEM(types, i) == (PyObject *)Py_TYPE(PyTuple_GET_ITEM(params, i));
        if (same)
            return found;
    }
    PyObject *types = types_of(params);
    if (types == NULL) {
        PyErr_Clear();
        return NULL;
    }
    values[7] = types;
    found = lookup(memo, groups, values, 8);
    Py_DECREF(types);
    return found;
}

/* Write one trace's spans to `parts`; 1 when written, 0 when the Python encoder should, -1 on an
 * error to raise. */
static int write_trace(SpanWriter *self, PyObject *trace, PyObject *groups, PyObject *parts) {
    PyObject *v[TRACE_SLOTS];
    for (int i = 0; i < TRACE_SLOTS; i++)
        if ((v[i] = SLOT(trace, self->trace_slots[i])) == NULL)
            return 0;
    PyObject *outcome = v[T_OUTCOME], *attempts = v[T_ATTEMPTS], *params = v[T_PARAMS];
    if (!PyTuple_CheckExact(outcome) || PyTuple_GET_SIZE(outcome) != OUTCOME_FIELDS
        || !PyList_CheckExact(attempts) || PyList_GET_SIZE(attempts) > 1 || !PyTuple_CheckExact(params))
        return 0;
    PyObject **o = &PyTuple_GET_ITEM(outcome, 0);
    int64_t status;
    if (!get_i64(o[1], &status) || status >= 400 || o[2] != Py_None)
        return 0; /* failed: error attributes and status */
    PyObject *flags[3] = {v[T_CONTENT], v[T_EVENTS], o[14]};
    for (int i = 0; i < 3; i++) { /* content, events or guardrail actions: the Python encoder */
        PyObject *f = flags[i];
        if (f != Py_None && !(PyList_CheckExact(f) && PyList_GET_SIZE(f) == 0)
            && !(PyTuple_CheckExact(f) && PyTuple_GET_SIZE(f) == 0))
            return 0;
    }
    PyObject *route = v[T_ROUTE], *request_id = v[T_REQUEST_ID], *parent_obj = v[T_PARENT_ID];
    const char *trace_id = id_of(v[T_TRACE_ID], 16), *span_id = id_of(v[T_SPAN_ID], 8);
    double started_at, started, ended, first = 0.0;
    if (trace_id == NULL || span_id == NULL || !PyBytes_CheckExact(parent_obj)
        || !PyUnicode_CheckExact(request_id) || !get_double(v[T_STARTED_AT], &started_at)
        || !get_double(v[T_STARTED], &started) || !get_double(o[0], &ended))
        return 0;
    const char *parent = NULL;
    if (PyBytes_GET_SIZE(parent_obj) && (parent = id_of(parent_obj, 8)) == NULL)
        return 0;
    int has_ttft = o[13] != Py_None;
    if (has_ttft && !get_double(o[13], &first))
        return 0;
    double ttft = first - started;
    uint64_t start_ns, end_ns;
    if (!to_ns(started_at * 1e9, &start_ns) || !to_ns((started_at + (ended - started)) * 1e9, &end_ns))
        return 0;
    Py_ssize_t id_len;
    const char *id_data = PyUnicode_AsUTF8AndSize(request_id, &id_len);
    if (id_data == NULL) {
        PyErr_Clear(); /* lone surrogates: the Python encoder replaces them */
        return 0;
    }
    PyObject *key[9] = {route, v[T_MODEL], o[1], o[4], o[5], o[10], params, NULL, NULL};
    PyObject *constants = server_constants(self, groups, key);
    if (constants == NULL)
        return 0;
    Py_INCREF(constants); /* the memo may change below */

    /* the client span first (nothing is appended unless both spans can be written here) */
    PyObject *client = NULL, *server = NULL, *dep_id = NULL;
    int done = 0;
    if (PyList_GET_SIZE(attempts) == 1) {
        PyObject *attempt = PyList_GET_ITEM(attempts, 0), *a[ATTEMPT_SLOTS], *g[TARGET_SLOTS];
        if ((PyObject *)Py_TYPE(attempt) != self->attempt_type)
            goto out;
        for (int i = 0; i < ATTEMPT_SLOTS; i++)
            if ((a[i] = SLOT(attempt, self->attempt_slots[i])) == NULL)
                goto out;
        const char *a_span = id_of(a[A_SPAN_ID], 8);
        double a_start;
        if (a[A_ERROR] != Py_None || a_span == NULL || !get_double(a[A_START], &a_start)
            || (PyObject *)Py_TYPE(a[A_TARGET]) != self->target_type)
            goto out;
        for (int i = 0; i < TARGET_SLOTS; i++)
            if ((g[i] = SLOT(a[A_TARGET], self->target_slots[i])) == NULL)
                goto out;
        dep_id = PyObject_GetAttr(g[G_DEPLOYMENT], s_id);
        if (dep_id == NULL) {
            PyErr_Clear();
            goto out;
        }
        PyObject *op = PyDict_GetItemWithError(self->operations, route);
        if (op == NULL) {
            if (PyErr_Occurred()) {
                PyErr_Clear();
                goto out;
            }
            op = self->default_op;
        }
        PyObject *values[9] = {dep_id, g[G_UPSTREAM_MODEL], op, a[A_NUMBER], a[A_STATUS],
                               o[10], o[11], o[12], Py_None};
        PyObject *blob = lookup(&self->client, groups, values, 9);
        uint64_t a_start_ns;
        if (blob == NULL || !to_ns((started_at + (a_start - started)) * 1e9, &a_start_ns))
            goto out;
        int64_t tokens[4]; /* input, output, cache read, cache write */
        for (int i = 0; i < 4; i++)
            if (!get_i64(o[6 + i], &tokens[i]))
                goto out;
        int64_t input;
        if (__builtin_add_overflow(tokens[0], tokens[2], &input)
            || __builtin_add_overflow(input, tokens[3], &input))
            goto out;
        int usage = tokens[0] || tokens[1] || tokens[2] || tokens[3];
        uint64_t counts[4] = {(uint64_t)input, (uint64_t)tokens[1], (uint64_t)tokens[2],
                              (uint64_t)tokens[3]};
        Py_ssize_t span = HEAD_MAX + PyBytes_GET_SIZE(blob) + (has_ttft ? float_attr_size(self->ttft_key) : 0);
        if (usage)
            for (int i = 0; i < 4; i++)
                span += int_attr_size(self->usage_keys[i], counts[i]);
        client = PyBytes_FromStringAndSize(NULL, 1 + varint_size((uint64_t)span) + span);
        if (client == NULL)
            goto fail;
        char *p = PyBytes_AS_STRING(client);
        *p++ = 0x12; p = put_varint(p, (uint64_t)span);
        p = put_head(p, trace_id, a_span, span_id, CLIENT, a_start_ns, end_ns);
        p = put_bytes(p, PyBytes_AS_STRING(blob), PyBytes_GET_SIZE(blob));
        if (usage)
            for (int i = 0; i < 4; i++)
                p = put_int_attr(p, self->usage_keys[i], counts[i]);
        if (has_ttft)
            p = put_float_attr(p, self->ttft_key, ttft);
        if (!filled(client, p))
            goto fail;
    }

    /* the server span: head, constants, parley.request_id, the time to the first chunk */
    Py_ssize_t value = 1 + varint_size((uint64_t)id_len) + id_len;
    Py_ssize_t id_inner = PyBytes_GET_SIZE(self->request_id_key) + 1 + varint_size((uint64_t)value) + value;
    Py_ssize_t span = (parent ? HEAD_MAX : 48) + PyBytes_GET_SIZE(constants)
                      + 1 + varint_size((uint64_t)id_inner) + id_inner
                      + (has_ttft ? float_attr_size(self->ttft_key) : 0);
    server = PyBytes_FromStringAndSize(NULL, 1 + varint_size((uint64_t)span) + span);
    if (server == NULL)
        goto fail;
    char *p = PyBytes_AS_STRING(server);
    *p++ = 0x12; p = put_varint(p, (uint64_t)span);
    p = put_head(p, trace_id, span_id, parent, SERVER, start_ns, end_ns);
    p = put_bytes(p, PyBytes_AS_STRING(constants), PyBytes_GET_SIZE(constants));
    *p++ = 0x4a; p = put_varint(p, (uint64_t)id_inner);
    p = put_bytes(p, PyBytes_AS_STRING(self->request_id_key), PyBytes_GET_SIZE(self->request_id_key));
    *p++ = 0x12; p = put_varint(p, (uint64_t)value);
    *p++ = 0x0a; p = put_varint(p, (uint64_t)id_len);
    p = put_bytes(p, id_data, id_len);
    if (has_ttft)
        p = put_float_attr(p, self->ttft_key, ttft);
    if (!filled(server, p))
        goto fail;

    if (PyList_Append(parts, server) < 0 || (client != NULL && PyList_Append(parts, client) < 0))
        goto fail;
    done = 1;
    goto out;
fail:
    done = -1;
out:
    Py_XDECREF(server);
    Py_XDECREF(client);
    Py_XDECREF(dep_id);
    Py_DECREF(constants);
    return done;
}

static PyObject *SpanWriter_write(SpanWriter *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyDict_CheckExact(args[2]) || !PyList_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "write(items, encoder, groups: dict, parts: list)");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(args[0]);
    if (it == NULL)
        return NULL;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        int done = 0;
        if ((PyObject *)Py_TYPE(item) == self->trace_type)
            done = write_trace(self, item, args[2], args[3]);
        if (done == 0) {
            PyObject *call_args[3] = {item, args[1], args[3]};
            PyObject *res = PyObject_VectorcallMethod(s_write, call_args,
                                                      3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (res == NULL)
                done = -1;
            Py_XDECREF(res);
        }
        Py_DECREF(item);
        if (done < 0) {
            Py_DECREF(it);
            return NULL;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static int SpanWriter_init(SpanWriter *self, PyObject *args, PyObject *kwds) {
    PyObject *trace_type, *attempt_type, *target_type, *operations, *default_op, *request_id_key,
        *ttft_key, *usage_keys;
    if (!PyArg_ParseTuple(args, "O!O!O!O!UO!O!O!", &PyType_Type, &trace_type, &PyType_Type,
                          &attempt_type, &PyType_Type, &target_type, &PyDict_Type, &operations,
                          &default_op, &PyBytes_Type, &request_id_key, &PyBytes_Type, &ttft_key,
                          &PyTuple_Type, &usage_keys))
        return -1;
    if (slot_offsets(trace_type, TRACE_NAMES, TRACE_SLOTS, self->trace_slots) < 0
        || slot_offsets(attempt_type, ATTEMPT_NAMES, ATTEMPT_SLOTS, self->attempt_slots) < 0
        || slot_offsets(target_type, TARGET_NAMES, TARGET_SLOTS, self->target_slots) < 0)
        return -1;
    if (PyTuple_GET_SIZE(usage_keys) != 4) {
        PyErr_SetString(PyExc_ValueError, "usage_keys: four encoded keys");
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        PyObject *k = PyTuple_GET_ITEM(usage_keys, i);
        if (!PyBytes_CheckExact(k)) {
            PyErr_SetString(PyExc_TypeError, "usage_keys: bytes");
            return -1;
        }
        Py_INCREF(k);
        Py_XSETREF(self->usage_keys[i], k);
    }
    Py_INCREF(trace_type); Py_XSETREF(self->trace_type, trace_type);
    Py_INCREF(attempt_type); Py_XSETREF(self->attempt_type, attempt_type);
    Py_INCREF(target_type); Py_XSETREF(self->target_type, target_type);
    Py_INCREF(operations); Py_XSETREF(self->operations, operations);
    Py_INCREF(default_op); Py_XSETREF(self->default_op, default_op);
    Py_INCREF(request_id_key); Py_XSETREF(self->request_id_key, request_id_key);
    Py_INCREF(ttft_key); Py_XSETREF(self->ttft_key, ttft_key);
    return 0;
}

static void SpanWriter_dealloc(SpanWriter *self) {
    Py_XDECREF(self->trace_type);
    Py_XDECREF(self->attempt_type);
    Py_XDECREF(self->target_type);
    Py_XDECREF(self->server.key);
    Py_XDECREF(self->server.blob);
    Py_XDECREF(self->client.key);
    Py_XDECREF(self->client.blob);
    Py_XDECREF(self->operations);
    Py_XDECREF(self->default_op);
    Py_XDECREF(self->request_id_key);
    Py_XDECREF(self->ttft_key);
    for (int i = 0; i < 4; i++)
        Py_XDECREF(self->usage_keys[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef SpanWriter_methods[] = {
    {"write", (PyCFunction)(void (*)(void))SpanWriter_write, METH_FASTCALL,
     "write(items, encoder, groups, parts): append each item's spans to parts"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SpanWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "parley.filters._spans.SpanWriter",
    .tp_basicsize = sizeof(SpanWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Writes the common case of a request's trace as OTLP Span messages.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SpanWriter_init,
    .tp_dealloc = (destructor)SpanWriter_dealloc,
    .tp_methods = SpanWriter_methods,
};


static struct PyModuleDef spans_module = {
    PyModuleDef_HEAD_INIT, "parley.filters._spans",
    "The OTLP span writer's common case in C (see trace_record.py).", -1, NULL,
};

#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC PyInit__spans(void) {
    INTERN(s_id, "id");
    INTERN(s_write, "write");
    PyObject *m = PyModule_Create(&spans_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddType(m, &SpanWriterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
