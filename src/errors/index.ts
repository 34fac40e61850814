export { errorCodes, Connack, type ConnackCode, type ErrorCode, type ErrorSpec } from './codes.js'
export { HeraldError, isHeraldError } from './herald-error.js'
