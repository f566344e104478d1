/**
 * Writes ONNX models (the ModelProto protobuf of onnx/onnx.proto) without the onnx package:
 * the subset a model built in code needs — ModelProto, GraphProto, NodeProto, TensorProto,
 * ValueInfoProto (tensor types only), AttributeProto (float, int, string, tensor, graph and
 * their lists) and OperatorSetIdProto.
 *
 * Fields are written in field-number order and repeated scalars the way the official proto2
 * serializer writes them (unpacked, except the `[packed = true]` tensor data fields), so the
 * bytes are what `onnx.save` would write for the same model. Large tensors should use
 * `rawData` (little-endian element bytes): it is carried by reference until the one final
 * copy, so a 100 MB model costs one 100 MB allocation, not one per nesting level.
 */
import { RuntimeError } from '../errors';

/** TensorProto.DataType values. */
export const DataType = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13,
} as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

/** Bytes per element of the fixed-size types, for checking rawData against dims. */
const ELEMENT_BYTES: Partial<Record<number, number>> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8 };

export interface TensorProto {
  readonly name?: string;
  readonly dataType: DataTypeCode;
  readonly dims: readonly number[];
  /** The elements as little-endian bytes (ONNX raw_data); the usual choice. */
  readonly rawData?: Uint8Array;
  /** FLOAT elements as numbers (float_data), for small constants. */
  readonly floatData?: readonly number[];
  /** INT64 elements (int64_data), for small constants such as shapes. */
  readonly int64Data?: readonly (number | bigint)[];
  readonly docString?: string;
}

export type AttributeProto =
  | { readonly name: string; readonly type: 'float'; readonly value: number }
  | { readonly name: string; readonly type: 'int'; readonly value: number | bigint }
  | { readonly name: string; readonly type: 'string'; readonly value: string | Uint8Array }
  | { readonly name: string; readonly type: 'tensor'; readonly value: TensorProto }
  | { readonly name: string; readonly type: 'graph'; readonly value: GraphProto }
  | { readonly name: string; readonly type: 'floats'; readonly value: readonly number[] }
  | { readonly name: string; readonly type: 'ints'; readonly value: readonly (number | bigint)[] }
  | { readonly name: string; readonly type: 'strings'; readonly value: readonly (string | Uint8Array)[] }
  | { readonly name: string; readonly type: 'tensors'; readonly value: readonly TensorProto[] };

export interface NodeProto {
  readonly opType: string;
  /** Input value names; '' marks an omitted optional input. */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  /** The operator set domain; default '' (ai.onnx). */
  readonly domain?: string;
  readonly attributes?: readonly AttributeProto[];
  readonly docString?: string;
}

/** A tensor value's name, element type and shape (numbers: fixed dims; strings: symbolic). */
export interface ValueInfoProto {
  readonly name: string;
  readonly elemType: DataTypeCode;
  /** Omitted: the rank is unknown. */
  readonly shape?: readonly (number | string)[];
  readonly docString?: string;
}

export interface GraphProto {
  readonly name: string;
  readonly nodes: readonly NodeProto[];
  readonly inputs: readonly ValueInfoProto[];
  readonly outputs: readonly ValueInfoProto[];
  readonly initializers?: readonly TensorProto[];
  readonly valueInfo?: readonly ValueInfoProto[];
  readonly docString?: string;
}

export interface OperatorSetId {
  /** Default '' (ai.onnx). */
  readonly domain?: string;
  readonly version: number;
}

export interface ModelProto {
  /** The IR version (onnxruntime 1.30 reads up to 11); 8 suits opset 13 to 18. */
  readonly irVersion: number;
  readonly opsetImports: readonly OperatorSetId[];
  readonly graph: GraphProto;
  readonly producerName?: string;
  readonly producerVersion?: string;
  readonly domain?: string;
  readonly modelVersion?: number;
  readonly docString?: string;
}

export class OnnxWriterError extends RuntimeError {
  constructor(reason: string) {
    super('INVALID_MODEL', reason);
  }
}

/** The model's protobuf bytes, ready for onnxruntime's InferenceSession.create(). */
export function encodeModel(model: ModelProto): Buffer {
  return modelMessage(model).toBuffer();
}

/** A tensor's protobuf bytes (for tests and for tools that write tensors on their own). */
export function encodeTensor(tensor: TensorProto): Buffer {
  return tensorMessage(tensor).toBuffer();
}

/** A FLOAT tensor over `data`'s bytes (no copy). */
export function floatTensor(name: string, dims: readonly number[], data: Float32Array): TensorProto {
  return { name, dataType: DataType.FLOAT, dims, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** An INT64 tensor (shapes, axes, indices). */
export function int64Tensor(name: string, dims: readonly number[], values: readonly (number | bigint)[]): TensorProto {
  const data = BigInt64Array.from(values, (v) => BigInt(v));
  return { name, dataType: DataType.INT64, dims, rawData: new Uint8Array(data.buffer) };
}

// Field numbers from onnx/onnx.proto.
const MODEL = { irVersion: 1, producerName: 2, producerVersion: 3, domain: 4, modelVersion: 5, docString: 6, graph: 7, opsetImport: 8 };
const OPSET = { domain: 1, version: 2 };
const GRAPH = { node: 1, name: 2, initializer: 5, docString: 10, input: 11, output: 12, valueInfo: 13 };
const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5, docString: 6, domain: 7 };
const ATTRIBUTE = { name: 1, f: 2, i: 3, s: 4, t: 5, g: 6, floats: 7, ints: 8, strings: 9, tensors: 10, docString: 13, type: 20 };
const ATTRIBUTE_TYPE = { float: 1, int: 2, string: 3, tensor: 4, graph: 5, floats: 6, ints: 7, strings: 8, tensors: 9 } as const;
const TENSOR = { dims: 1, dataType: 2, floatData: 4, int64Data: 7, name: 8, rawData: 9, docString: 12 };
const VALUE_INFO = { name: 1, type: 2, docString: 3 };
const TYPE = { tensorType: 1 };
const TENSOR_TYPE = { elemType: 1, shape: 2 };
const SHAPE = { dim: 1 };
const DIMENSION = { dimValue: 1, dimParam: 2 };

function modelMessage(model: ModelProto): ProtoMessage {
  const m = new ProtoMessage();
  m.int(MODEL.irVersion, checkedInt(model.irVersion, 'irVersion', 1));
  m.optionalString(MODEL.producerName, model.producerName);
  m.optionalString(MODEL.producerVersion, model.producerVersion);
  m.optionalString(MODEL.domain, model.domain);
  if (model.modelVersion !== undefined) m.int(MODEL.modelVersion, checkedInt(model.modelVersion, 'modelVersion', 0));
  m.optionalString(MODEL.docString, model.docString);
  m.message(MODEL.graph, graphMessage(model.graph));
  if (model.opsetImports.length === 0) throw new OnnxWriterError('a model imports at least one operator set');
  for (const opset of model.opsetImports) {
    const o = new ProtoMessage();
    o.optionalString(OPSET.domain, opset.domain ?? '');
    o.int(OPSET.version, checkedInt(opset.version, 'opset version', 1));
    m.message(MODEL.opsetImport, o);
  }
  return m;
}

function graphMessage(graph: GraphProto): ProtoMessage {
  const m = new ProtoMessage();
  for (const node of graph.nodes) m.message(GRAPH.node, nodeMessage(node));
  m.string(GRAPH.name, nonEmpty(graph.name, 'graph name'));
  for (const tensor of graph.initializers ?? []) {
    if (!tensor.name) throw new OnnxWriterError('an initializer needs a name');
    m.message(GRAPH.initializer, tensorMessage(tensor));
  }
  m.optionalString(GRAPH.docString, graph.docString);
  for (const value of graph.inputs) m.message(GRAPH.input, valueInfoMessage(value));
  for (const value of graph.outputs) m.message(GRAPH.output, valueInfoMessage(value));
  for (const value of graph.valueInfo ?? []) m.message(GRAPH.valueInfo, valueInfoMessage(value));
  return m;
}

function nodeMessage(node: NodeProto): ProtoMessage {
  const m = new ProtoMessage();
  for (const input of node.inputs) m.string(NODE.input, input);
  for (const output of node.outputs) m.string(NODE.output, nonEmpty(output, `an output of ${node.opType}`));
  m.optionalString(NODE.name, node.name);
  m.string(NODE.opType, nonEmpty(node.opType, 'op type'));
  for (const attribute of node.attributes ?? []) m.message(NODE.attribute, attributeMessage(attribute));
  m.optionalString(NODE.docString, node.docString);
  m.optionalString(NODE.domain, node.domain);
  return m;
}

function attributeMessage(attribute: AttributeProto): ProtoMessage {
  const m = new ProtoMessage();
  m.string(ATTRIBUTE.name, nonEmpty(attribute.name, 'attribute name'));
  switch (attribute.type) {
    case 'float': m.float(ATTRIBUTE.f, attribute.value); break;
    case 'int': m.int(ATTRIBUTE.i, attribute.value); break;
    case 'string': m.bytes(ATTRIBUTE.s, utf8(attribute.value)); break;
    case 'tensor': m.message(ATTRIBUTE.t, tensorMessage(attribute.value)); break;
    case 'graph': m.message(ATTRIBUTE.g, graphMessage(attribute.value)); break;
    case 'floats': for (const v of attribute.value) m.float(ATTRIBUTE.floats, v); break;
    case 'ints': for (const v of attribute.value) m.int(ATTRIBUTE.ints, v); break;
    case 'strings': for (const v of attribute.value) m.bytes(ATTRIBUTE.strings, utf8(v)); break;
    case 'tensors': for (const v of attribute.value) m.message(ATTRIBUTE.tensors, tensorMessage(v)); break;
    default: throw new OnnxWriterError(`unknown attribute type of '${(attribute as AttributeProto).name}'`);
  }
  m.int(ATTRIBUTE.type, ATTRIBUTE_TYPE[attribute.type]);
  return m;
}

function tensorMessage(tensor: TensorProto): ProtoMessage {
  const elements = tensor.dims.reduce((count, dim) => count * checkedInt(dim, 'a tensor dim', 0), 1);
  const sources = [tensor.rawData, tensor.floatData, tensor.int64Data].filter((s) => s !== undefined);
  if (sources.length !== 1) throw new OnnxWriterError(`tensor '${tensor.name ?? ''}' needs exactly one of rawData, floatData, int64Data`);
  const m = new ProtoMessage();
  for (const dim of tensor.dims) m.int(TENSOR.dims, dim);
  m.int(TENSOR.dataType, tensor.dataType);
  if (tensor.floatData !== undefined) {
    expectElements(tensor, tensor.floatData.length, elements, DataType.FLOAT);
    m.packedFloats(TENSOR.floatData, tensor.floatData);
  }
  if (tensor.int64Data !== undefined) {
    expectElements(tensor, tensor.int64Data.length, elements, DataType.INT64);
    m.packedInts(TENSOR.int64Data, tensor.int64Data);
  }
  m.optionalString(TENSOR.name, tensor.name);
  if (tensor.rawData !== undefined) {
    const size = ELEMENT_BYTES[tensor.dataType];
    if (size === undefined) throw new OnnxWriterError(`tensor '${tensor.name ?? ''}': rawData needs a fixed-size element type`);
    if (tensor.rawData.length !== elements * size) {
      throw new OnnxWriterError(`tensor '${tensor.name ?? ''}' has dims of ${elements} elements but ${tensor.rawData.length} bytes of rawData (${size} per element)`);
    }
    m.bytes(TENSOR.rawData, tensor.rawData);
  }
  m.optionalString(TENSOR.docString, tensor.docString);
  return m;
}

function valueInfoMessage(value: ValueInfoProto): ProtoMessage {
  const tensorType = new ProtoMessage();
  tensorType.int(TENSOR_TYPE.elemType, value.elemType);
  if (value.shape !== undefined) {
    const shape = new ProtoMessage();
    for (const dim of value.shape) {
      const d = new ProtoMessage();
      if (typeof dim === 'number') d.int(DIMENSION.dimValue, checkedInt(dim, `a dim of '${value.name}'`, 0));
      else d.string(DIMENSION.dimParam, nonEmpty(dim, `a symbolic dim of '${value.name}'`));
      shape.message(SHAPE.dim, d);
    }
    tensorType.message(TENSOR_TYPE.shape, shape);
  }
  const type = new ProtoMessage();
  type.message(TYPE.tensorType, tensorType);
  const m = new ProtoMessage();
  m.string(VALUE_INFO.name, nonEmpty(value.name, 'value name'));
  m.message(VALUE_INFO.type, type);
  m.optionalString(VALUE_INFO.docString, value.docString);
  return m;
}

/**
 * One protobuf message being written: the encoded fields as a list of parts (nested
 * messages and raw bytes are appended by reference) and their total length.
 */
class ProtoMessage {
  private readonly parts: Uint8Array[] = [];
  private length = 0;

  int(field: number, value: number | bigint): void {
    this.tag(field, 0);
    this.varint(value);
  }

  float(field: number, value: number): void {
    this.tag(field, 5);
    const bytes = Buffer.alloc(4);
    bytes.writeFloatLE(value, 0);
    this.push(bytes);
  }

  bytes(field: number, value: Uint8Array): void {
    this.tag(field, 2);
    this.varint(value.length);
    this.push(value);
  }

  string(field: number, value: string): void {
    this.bytes(field, Buffer.from(value, 'utf8'));
  }

  optionalString(field: number, value: string | undefined): void {
    if (value !== undefined && value !== '') this.string(field, value);
  }

  message(field: number, child: ProtoMessage): void {
    this.tag(field, 2);
    this.varint(child.length);
    for (const part of child.parts) this.push(part);
  }

  packedFloats(field: number, values: readonly number[]): void {
    const bytes = Buffer.alloc(4 * values.length);
    values.forEach((v, i) => bytes.writeFloatLE(v, 4 * i));
    this.bytes(field, bytes);
  }

  packedInts(field: number, values: readonly (number | bigint)[]): void {
    const body = new ProtoMessage();
    for (const v of values) body.varint(v);
    this.bytes(field, body.toBuffer());
  }

  /** The message's bytes: the one copy of everything appended. */
  toBuffer(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }

  private tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  /** int64 as protobuf writes it: negatives in two's complement, so 10 bytes. */
  private varint(value: number | bigint): void {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new OnnxWriterError(`an integer field cannot hold ${value}`);
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      out.push(byte);
    } while (v !== 0n);
    this.push(Uint8Array.from(out));
  }

  private push(part: Uint8Array): void {
    this.parts.push(part);
    this.length += part.length;
  }
}

function checkedInt(value: number, what: string, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) throw new OnnxWriterError(`${what} must be an integer of at least ${min}, got ${value}`);
  return value;
}

function nonEmpty(value: string, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new OnnxWriterError(`${what} must be non-empty text`);
  return value;
}

function expectElements(tensor: TensorProto, given: number, expected: number, dataType: number): void {
  if (tensor.dataType !== dataType) throw new OnnxWriterError(`tensor '${tensor.name ?? ''}': this data field needs data type ${dataType}`);
  if (given !== expected) throw new OnnxWriterError(`tensor '${tensor.name ?? ''}' has dims of ${expected} elements but ${given} values`);
}

function utf8(value: string | Uint8Array): Uint8Array {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}
