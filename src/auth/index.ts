export { OpenHooks } from './open.js'
export { type Access, type StaticRule, StaticRuleHooks, type StaticRulesConfig } from './static-rules.js'
